"""Metrics of an organization: spend, delivery and attributed results, in one SQL query per report.

Spend, impressions and clicks come from the ``Daily*Metric`` tables (what the ad platforms report);
attributed conversions and revenue from ``AttributionLink`` (what the engine wrote) times the
conversion's ``valueMicros``. Nothing here recomputes attribution. See ``docs/service.md`` for the exact
definitions; in short:

- grain ``ad`` reads ``DailyAdMetric``, ``campaign`` ``DailyCampaignMetric``, ``ad_account``,
  ``platform``, ``organization`` and ``channel`` ``DailyAdAccountMetric``; a filter at a finer level (a
  campaign filter on an account report) moves the read to that finer table.
- spend at the ``channel`` grain: a spend row goes to the channel the rules table (the one that gives
  touchpoints their channel, :func:`~optiq_engine.channels.channel_sql`) gives a click its platform paid
  for: the platform's click id (:data:`PLATFORM_CLICK_IDS`), no UTM source or medium. Spend no rule maps
  is one row with a null channel (name ``(unmapped)``), never dropped: the channels' spend adds up to the
  organization's. A channel's ROAS is the model's revenue credited to the channel over the spend mapped to it.
- a conversion is counted on the day it occurred in the time zone of the ad account its touchpoint
  resolves to (UTC when it resolves to none), in the period that contains that day.
- attributed results whose touchpoint resolves to no key of the grain are a row with a null key at the
  ``platform``, ``ad_account`` and ``campaign`` grains (so every grain adds up to the organization), and
  are left out at the ``ad`` grain (that row would mix currencies).
- spend is zero for a key the platforms report spend for but that has no spend rows in the period, and
  null where there can be none (that null-key row, a platform or organization without an ad account).
- ratios: ``roas = revenue / spend``, ``cpa = spend / conversions``, ``cpc = spend / clicks``,
  ``ctr = clicks / impressions``, ``conversion_rate = conversions / clicks``; null when the denominator
  is zero or unknown, or the spend is null. Money columns are int64 micros (rounded half away from zero).
- currencies: amounts are in their ad account's currency; a row adding up several currencies is refused
  (:class:`CurrencyError`) unless a :class:`CurrencyConversion` is given.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import polars as pl
from sqlalchemy import Connection, text

from ..channels import CLICK_ID_COLUMNS, DEFAULT_CHANNEL_RULES, ChannelRules, channel_sql
from ..errors import ConfigError
from ..io import rollup
from ..io.schema import ATTRIBUTION_MODELS, PLATFORM_CODES
from .errors import CurrencyError, NotFoundError

__all__ = [
    "Grain",
    "GRAINS",
    "BASE_METRICS",
    "RATIO_METRICS",
    "METRICS",
    "CurrencyConversion",
    "MetricsQuery",
    "read_metrics",
    "read_credit",
    "is_summarized",
    "has_attribution_results",
    "no_results_message",
    "key_column",
    "channel_sql",
    "PLATFORM_CLICK_IDS",
    "UNMAPPED",
]

Grain = Literal["organization", "platform", "ad_account", "campaign", "ad", "channel"]
GRAINS: tuple[str, ...] = ("organization", "platform", "ad_account", "campaign", "ad", "channel")

#: Metric name -> Polars dtype, in output order.
BASE_METRICS: dict[str, pl.DataType] = {
    "spend_micros": pl.Int64(),
    "impressions": pl.Int64(),
    "clicks": pl.Int64(),
    "conversions": pl.Float64(),
    "revenue_micros": pl.Int64(),
}
RATIO_METRICS: dict[str, pl.DataType] = {
    "roas": pl.Float64(),
    "cpa_micros": pl.Int64(),
    "cpc_micros": pl.Int64(),
    "ctr": pl.Float64(),
    "conversion_rate": pl.Float64(),
}
METRICS: dict[str, pl.DataType] = {**BASE_METRICS, **RATIO_METRICS}

_KEY_COLUMNS = {
    "organization": "organization_id",
    "platform": "platform",
    "ad_account": "ad_account_id",
    "campaign": "campaign_id",
    "ad": "ad_id",
    "channel": "channel",
}
# Spend tables by level: 1 ad account, 2 campaign, 3 ad. Channel reads what the organization does (same total).
_GRAIN_LEVEL = {"organization": 1, "platform": 1, "ad_account": 1, "campaign": 2, "ad": 3, "channel": 1}
#: Platform code -> the click id its ads' clicks carry (auto-tagging): the inverse of
#: ``optiq_engine.touchpoints.CLICK_ID_PLATFORMS`` (not imported: it loads the kernels). A spend row is mapped
#: to a channel as a touchpoint with this click id and no UTM source or medium would be.
PLATFORM_CLICK_IDS: dict[str, str] = {"GOOGLE_ADS": "gclid", "META": "fbclid", "TIKTOK": "ttclid"}
#: ``name`` of the channel-grain row (channel null) of the spend no channel rule maps.
UNMAPPED = "(unmapped)"
_MAX_DAYS = 3660
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)


def key_column(grain: str) -> str:
    """The name of the key column of a report at ``grain`` (``"campaign"`` -> ``"campaign_id"``)."""
    return _KEY_COLUMNS[grain]


@dataclass(frozen=True)
class CurrencyConversion:
    """Rates to report every amount in one ``target`` currency.

    ``rates`` maps a currency code to the number of ``target`` units one unit of it is worth
    (``{"EUR": 1.08}`` with target ``USD``); the target's own rate is 1. Amounts are converted before
    they are added up, exactly (Postgres ``numeric``), then rounded to whole micros.
    """

    target: str
    rates: Mapping[str, Decimal | float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not _is_currency(self.target):
            raise ConfigError(f"target currency must be a 3-letter ISO 4217 code like 'USD', got {self.target!r}")
        clean: dict[str, Decimal] = {self.target: Decimal(1)}
        for currency, rate in dict(self.rates).items():
            if not isinstance(currency, str) or not _is_currency(currency):
                raise ConfigError(f"currency codes must be 3 upper-case letters like 'EUR', got {currency!r}")
            try:
                value = Decimal(str(rate))
            except InvalidOperation:
                value = Decimal("NaN")
            if not value.is_finite() or value <= 0:
                raise ConfigError(f"rate of {currency} must be a positive finite number, got {rate!r}")
            if currency == self.target and value != 1:
                raise ConfigError(f"the rate of the target currency {currency} must be 1, got {rate!r}")
            clean[currency] = value
        object.__setattr__(self, "rates", clean)


def _is_currency(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


@dataclass(frozen=True)
class MetricsQuery:
    """What to report: an organization, a date range, a model, a grain, filters.

    Parameters
    ----------
    organization_id
        The tenant; every table read is filtered by it.
    start, end
        First and last day of the period (inclusive), ad-account local dates.
    model
        Attribution model of the links (``AttributionModel`` value).
    grain
        One of :data:`GRAINS`; default ``campaign`` (its rows never add up several currencies).
    daily
        One row per key and day instead of one per key for the whole period.
    compare
        Add ``<metric>_previous`` (the same number of days just before ``start``; with ``daily``, day
        ``d`` is compared with ``d - len(period)``) and ``<metric>_change`` (relative change, null when
        the previous value is zero or null).
    platform, ad_account_id, campaign_id, ad_id
        Keep only this platform / ad account / campaign / ad.
    conversion
        Report every amount in one currency (required when a row would add up several currencies).
    channel_rules
        Rules deriving a touchpoint's channel and mapping spend to channels (grain ``channel``); default
        the engine's.
    conversion_name
        Keep only the attributed results of conversions of this type (``TrackingEvent.name``, exactly; the
        links of ``optiq run`` with ``"by": "name"``, docs/attribution.md "Conversion types"); spend is
        not per type and stays the same. Read from the links, not the daily summaries.
    """

    organization_id: str
    start: date
    end: date
    model: str = "LAST_TOUCH"
    grain: Grain = "campaign"
    daily: bool = False
    compare: bool = True
    platform: str | None = None
    ad_account_id: str | None = None
    campaign_id: str | None = None
    ad_id: str | None = None
    conversion: CurrencyConversion | None = None
    channel_rules: ChannelRules | None = None
    conversion_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.organization_id, str) or not self.organization_id:
            raise ConfigError("organization_id is required: every metric is scoped by organization")
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, datetime) or not isinstance(value, date):
                raise ConfigError(f"{name} must be a date (not a datetime), got {value!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not _FIRST_DAY <= value <= _LAST_DAY:
                raise ConfigError(f"{name} must be between {_FIRST_DAY} and {_LAST_DAY}, got {value}")
        if self.start > self.end:
            raise ConfigError(f"start {self.start} must not be after end {self.end}")
        if self.days > _MAX_DAYS:
            raise ConfigError(f"the period has {self.days} days; at most {_MAX_DAYS} are allowed")
        if self.model not in ATTRIBUTION_MODELS:
            raise ConfigError(f"model must be one of {', '.join(ATTRIBUTION_MODELS)}; got {self.model!r}")
        if self.grain not in GRAINS:
            raise ConfigError(f"grain must be one of {', '.join(GRAINS)}; got {self.grain!r}")
        if self.platform is not None and self.platform not in PLATFORM_CODES:
            raise ConfigError(f"platform must be one of {', '.join(PLATFORM_CODES)}; got {self.platform!r}")
        for name in ("ad_account_id", "campaign_id", "ad_id", "conversion_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name} must be a non-empty id or None, got {value!r}")

    @property
    def days(self) -> int:
        """Number of days in the period."""
        return (self.end - self.start).days + 1

    @property
    def previous_start(self) -> date:
        """First day of the comparison period."""
        return self.start - timedelta(days=self.days)

    @property
    def previous_end(self) -> date:
        """Last day of the comparison period (the day before ``start``)."""
        return self.start - timedelta(days=1)

    @property
    def spend_level(self) -> int:
        """Which spend table the report reads: 1 ad account, 2 campaign, 3 ad (channel: as organization)."""
        filters = [2 if self.campaign_id else 0, 3 if self.ad_id else 0]
        return max(_GRAIN_LEVEL[self.grain], *filters)


# --- SQL -----------------------------------------------------------------------------------------------
_ORG_SCOPED = ' AND {alias}."organizationId" = :org'
# Spend rows (alias m: scope id, day, impressions, clicks, spend) joined up the hierarchy, by spend level.
_SPEND_JOINS = {
    1: ' JOIN "AdAccount" aa ON aa.id = m.sid' + _ORG_SCOPED.format(alias="aa"),
    2: (
        ' JOIN "Campaign" c ON c.id = m.sid' + _ORG_SCOPED.format(alias="c")
        + ' JOIN "AdAccount" aa ON aa.id = c."adAccountId"' + _ORG_SCOPED.format(alias="aa")
    ),
    3: (
        ' JOIN "Ad" ad ON ad.id = m.sid' + _ORG_SCOPED.format(alias="ad")
        + ' JOIN "Campaign" c ON c.id = ad."campaignId"' + _ORG_SCOPED.format(alias="c")
        + ' JOIN "AdAccount" aa ON aa.id = c."adAccountId"' + _ORG_SCOPED.format(alias="aa")
    ),
}
_CREDIT_FROM = (
    '"TrackingSite" s\n'
    '  JOIN "TrackingEvent" e ON e."siteId" = s.id AND e.type = \'CONVERSION\'\n'
    '    AND e."occurredAt" >= :lo_ts AND e."occurredAt" < :hi_ts\n'
    '  JOIN "AttributionLink" l ON l."conversionId" = e.id AND {model_clause}\n'
    '  JOIN "TouchPoint" tp ON tp.id = l."touchPointId" AND tp."siteId" = s.id\n'
    '  LEFT JOIN "Ad" ad ON ad.id = tp."adId"' + _ORG_SCOPED.format(alias="ad") + "\n"
    '  LEFT JOIN "Campaign" c ON c.id = COALESCE(tp."campaignId", ad."campaignId")' + _ORG_SCOPED.format(alias="c") + "\n"
    '  LEFT JOIN "AdAccount" aa ON aa.id = c."adAccountId"' + _ORG_SCOPED.format(alias="aa") + "\n"
    '  LEFT JOIN "Platform" p ON p.id = aa."platformId"'
)
_CREDIT_PLATFORM = 'COALESCE(p.code::text, tp."platformCode"::text)'
_SPEND_KEYS = {
    "organization": "CAST(:org AS text)",
    "platform": "p.code::text",
    "ad_account": "aa.id",
    "campaign": "c.id",
    "ad": "ad.id",
    "channel": "ch.channel",  # the platform's channel (:func:`_platform_channels`), null: unmapped
}
# Channel keys of links are the touchpoints' (channel_sql over tp), not the spend's.
_CREDIT_KEYS = {**{k: v for k, v in _SPEND_KEYS.items() if k != "channel"}, "platform": _CREDIT_PLATFORM}
# The same keys in "EngineCreditDaily" (alias x), and the filters' columns there.
_SUMMARY_KEYS = {
    "organization": "CAST(:org AS text)",
    "platform": "x.platform",
    "ad_account": 'x."adAccountId"',
    "campaign": 'x."campaignId"',
    "channel": "x.channel",
}
_SUMMARY_FILTERS = {"platform": "x.platform", "ad_account_id": 'x."adAccountId"', "campaign_id": 'x."campaignId"'}
_NAMES = {
    "organization": ('"Organization" n ON n.id = r.key', "n.name"),
    "platform": ('"Platform" n ON n.code::text = r.key', "n.name"),
    "ad_account": ('"AdAccount" n ON n.id = r.key AND n."organizationId" = :org', "n.name"),
    "campaign": ('"Campaign" n ON n.id = r.key AND n."organizationId" = :org', "n.name"),
    "ad": ('"Ad" n ON n.id = r.key AND n."organizationId" = :org', "n.name"),
    "channel": (None, "COALESCE(r.key, CAST(:unmapped AS text))"),
}


def _fx_cte(conversion: CurrencyConversion | None, params: dict[str, Any]) -> str:
    if conversion is None:
        return ""
    values = []
    for i, (currency, rate) in enumerate(conversion.rates.items()):
        params[f"fx_c{i}"], params[f"fx_r{i}"] = currency, str(rate)
        values.append(f"(CAST(:fx_c{i} AS text), CAST(:fx_r{i} AS numeric))")
    return f"fx (currency, rate) AS (VALUES {', '.join(values)}),\n"


_LINK_FILTERS = {"ad_account_id": "aa.id", "campaign_id": "c.id", "ad_id": "ad.id"}


def _name_filter(query: MetricsQuery, params: dict[str, Any]) -> str:
    """SQL over the conversions (alias ``e``): `` AND e.name = ...`` when the query keeps one conversion type."""
    if query.conversion_name is None:
        return ""
    params["conversion_name"] = query.conversion_name
    return " AND e.name = CAST(:conversion_name AS text)"


def _platform_channels(query: MetricsQuery, params: dict[str, Any]) -> str:
    """SQL: the CTE ``chmap(platform, channel)``, the channel of each platform's spend: the channel the query's
    rules give a touchpoint with the platform's click id (:data:`PLATFORM_CLICK_IDS`) and no UTM source or
    medium, by the very ``CASE`` that gives touchpoints theirs (:func:`channel_sql`, without its
    ``direct`` / ``unassigned`` defaults: null when no rule matches, i.e. unmapped)."""
    rows = []
    for i, (code, click_id) in enumerate(PLATFORM_CLICK_IDS.items()):
        params[f"pc_{i}"] = code
        clicks = ", ".join("'1'" if column == click_id else "NULL" for column in CLICK_ID_COLUMNS)
        rows.append(f"(CAST(:pc_{i} AS text), {clicks}, NULL, NULL)")
    columns = ", ".join(CLICK_ID_COLUMNS)
    case = channel_sql(query.channel_rules, params, fallbacks=False)
    return (
        f"chmap AS (\n  SELECT tp.platform, {case} AS channel\n"
        f'  FROM (VALUES {", ".join(rows)}) AS tp(platform, {columns}, "utmSource", "utmMedium")\n),\n'
    )


def _filters(query: MetricsQuery, columns: Mapping[str, str], params: dict[str, Any]) -> str:
    """`` AND column = value`` for each filter the query sets (``columns``: filter name -> SQL column)."""
    clauses = []
    for name in ("platform", "ad_account_id", "campaign_id", "ad_id"):
        value = getattr(query, name)
        if value is not None:
            params[f"f_{name}"] = value
            clauses.append(f" AND {columns[name]} = CAST(:f_{name} AS text)")
    return "".join(clauses)


def _bucket_rows(query: MetricsQuery, params: dict[str, Any]) -> str:
    """SQL: a row source ``b(span, day, prev, out)`` of the aligned summary buckets (:data:`rollup.SPANS`)
    tiling the period and, with ``compare``, the previous one (each on its own, so no bucket straddles the
    two); 1-day buckets only with ``daily``. ``prev``: the bucket is in the previous period; ``out``: the
    report day its sums go to (daily: the day, shifted by the period's length when ``prev``; else null)."""
    spans, days, prevs, outs = [], [], [], []
    periods = [(True, query.previous_start, query.previous_end)] if query.compare else []
    for prev, lo, hi in [*periods, (False, query.start, query.end)]:
        for span, firsts in rollup.buckets(lo, hi, spans=(1,) if query.daily else rollup.SPANS).items():
            for first in firsts:
                spans.append(span)
                days.append(first)
                prevs.append(prev)
                outs.append((first + timedelta(days=query.days if prev else 0)) if query.daily else None)
    params.update(b_span=spans, b_day=days, b_prev=prevs, b_out=outs)
    return (
        "unnest(CAST(:b_span AS smallint[]), CAST(:b_day AS date[]), CAST(:b_prev AS boolean[]), CAST(:b_out AS date[]))"
        " AS b(span, day, prev, out)"
    )


def _report_day(query: MetricsQuery, day: str) -> str:
    """SQL: ``day`` (a report day: ``b.out``, ``m.day`` or :func:`_shifted`) in daily reports, else null
    (then reports group by key alone: sums per key hash well, sorts of text keys do not)."""
    return day if query.daily else "NULL::date"


def _shifted(day: str) -> str:
    """SQL: the report day of a row read by its ``day``: days of the previous period move onto the period's."""
    return f"CASE WHEN {day} < CAST(:start AS date) THEN {day} + CAST(:ndays AS integer) ELSE {day} END"


def _group(query: MetricsQuery) -> str:
    """SQL: GROUP BY the key, and the report day of daily reports."""
    return "GROUP BY 1, 2" if query.daily else "GROUP BY 1"


def _sums(query: MetricsQuery, measures: Mapping[str, str], prev: str, post: str = "{}") -> str:
    """SQL: ``sum(expr) AS name`` per measure, split by period (``name`` and ``name_p``) with ``compare``;
    ``post`` wraps each sum (``"{}::numeric / 1e15"``)."""
    if not query.compare:
        return ", ".join(f"{post.format(f'sum({expr})')} AS {name}" for name, expr in measures.items())
    return ", ".join(
        f"{post.format(f'sum({expr}) FILTER (WHERE NOT {prev})')} AS {name}, "
        f"{post.format(f'sum({expr}) FILTER (WHERE {prev})')} AS {name}_p"
        for name, expr in measures.items()
    )


def _summary_level(query: MetricsQuery) -> int | None:
    """The coarsest ``EngineCreditDaily.level`` with the query's key and filter columns; None when the
    query needs ads (not summarized) or custom channel rules (the summary has the default rules' channels)."""
    if query.grain == "ad" or query.ad_id is not None or query.conversion_name is not None:
        return None  # the summaries have no conversion name either
    if query.channel_rules is not None and query.channel_rules != DEFAULT_CHANNEL_RULES:
        return None
    if query.grain == "channel":
        return 2 if all(getattr(query, f) is None for f in _SUMMARY_FILTERS) else 0
    return 0 if query.grain == "campaign" or query.campaign_id is not None else 1


def is_summarized(connection: Connection, organization_id: str) -> bool:
    """Whether the organization's credit is summarized (``optiq db summarize``; a primary-key lookup)."""
    found = connection.execute(
        text('SELECT EXISTS (SELECT 1 FROM "EngineCreditState" WHERE "organizationId" = :org)'), {"org": organization_id}
    ).scalar()
    return bool(found)


_SPEND_MEASURES = {"imp": "impressions", "clk": "clicks", "spend": '"spendMicros"'}
_CREDIT_MEASURES = ("conv", "rev")


def _currencies(query: MetricsQuery, currency: str, listing: bool, *, single: bool = False) -> str:
    """SQL: a side's currency aggregates per key and day: ``cmin`` and ``cmax`` (one currency when equal;
    ``listing``: ``clist``, all of them, for the error message) and, with a conversion, ``miss`` (those
    without a rate); ``single``: the same columns of one row (no aggregation)."""
    if single:
        out = f"{currency} AS clist" if listing else f"{currency} AS cmin, {currency} AS cmax"
        miss = f"CASE WHEN fx.rate IS NULL THEN {currency} END"
    else:
        out = f"string_agg({currency}, ',') AS clist" if listing else f"min({currency}) AS cmin, max({currency}) AS cmax"
        miss = f"string_agg({currency}, ',') FILTER (WHERE fx.rate IS NULL)"
    return out + (f", {miss} AS miss" if query.conversion is not None else "")


def _spend_cte(query: MetricsQuery, params: dict[str, Any], listing: bool = False) -> str:
    """SQL: ``spend`` per key and report day: the levels :data:`rollup.SPEND_LEVELS` from the
    ``EngineSpendDaily`` buckets, ads from ``DailyAdMetric``; summed per scope first, then joined up the
    hierarchy (a few thousand rows, not one per day), amounts converted with a currency conversion."""
    level = query.spend_level
    if level in rollup.SPEND_LEVELS:
        measures = {name: f"s.{column}" for name, column in _SPEND_MEASURES.items()}
        rows = (
            f'SELECT s."scopeId" AS sid, {_report_day(query, "b.out")} AS day, {_sums(query, measures, "b.prev", post="{}::bigint")}\n'
            f'  FROM {_bucket_rows(query, params)} JOIN "EngineSpendDaily" s ON s."organizationId" = :org\n'
            f"    AND s.level = {level} AND s.span = b.span AND s.day = b.day\n  {_group(query)}"
        )
    else:
        measures = {name: f"d.{column}" for name, column in _SPEND_MEASURES.items()}
        ads = ""
        if query.ad_id is not None:
            ads = ' AND d."adId" = CAST(:f_ad_id AS text)'
        elif query.campaign_id is not None:
            ads = ' AND d."adId" IN (SELECT id FROM "Ad" WHERE "organizationId" = :org AND "campaignId" = CAST(:f_campaign_id AS text))'
        prev = "(d.date < CAST(:start AS date))"
        rows = (
            f'SELECT d."adId" AS sid, {_report_day(query, _shifted("d.date"))} AS day, {_sums(query, measures, prev, post="{}::bigint")}\n'
            f'  FROM "DailyAdMetric" d WHERE d."organizationId" = :org AND d.date >= :lo AND d.date <= :hi{ads}\n  {_group(query)}'
        )
    fx = query.conversion is not None
    # Keyed by the scope itself (a campaign report from campaign rows): one row per key, nothing to add up.
    single = query.grain in ("ad_account", "campaign", "ad") and _GRAIN_LEVEL[query.grain] == level
    names = [f"{n}{s}" for s in (("", "_p") if query.compare else ("",)) for n in _SPEND_MEASURES]
    values = [f"m.{n}{' * COALESCE(fx.rate, 1)' if fx and n.startswith('spend') else ''}" for n in names]
    sums = [f"{v if single else f'sum({v})'} AS {n}" for v, n in zip(values, names, strict=True)]
    filters = _filters(query, {**_LINK_FILTERS, "platform": "p.code::text"}, params)
    return (
        f"sp AS (\n  {rows}\n),\n"
        f"spend AS (\n  SELECT {_SPEND_KEYS[query.grain]} AS key, {_report_day(query, 'm.day')} AS day, {', '.join(sums)},"
        f" {_currencies(query, 'aa.currency', listing, single=single)}\n"
        f'  FROM sp m{_SPEND_JOINS[level]} JOIN "Platform" p ON p.id = aa."platformId"'
        + (" LEFT JOIN chmap ch ON ch.platform = p.code::text" if query.grain == "channel" else "")
        + (" LEFT JOIN fx ON fx.currency = aa.currency" if fx else "")
        + f"\n  WHERE true{filters}{'' if single else chr(10) + '  ' + _group(query)}\n),\n"
    )


def _credit_cte(
    query: MetricsQuery,
    params: dict[str, Any],
    *,
    models: str,
    summarized: bool,
    by_model: bool = False,
    listing: bool = False,
    null_key: bool = False,
) -> str:
    """SQL: ``credit``, attributed conversions (``conv``) and revenue (``rev``, converted with a currency
    conversion) per key and report day (and model), from the ``EngineCreditDaily`` buckets when the
    organization is ``summarized``, the default channel rules apply and the query needs no ad; else from
    the links. ``null_key``: keep the credit whose touchpoint resolves to no key of the grain (key null);
    else it is left out (grains other than channel and organization, whose keys are never null)."""
    grain, fx = query.grain, query.conversion is not None
    rate = " * COALESCE(fx.rate, 1)" if fx else ""
    fx_join = " LEFT JOIN fx ON fx.currency = x.currency" if fx else ""
    group = _group(query) + (", model" if by_model else "")
    level = _summary_level(query) if summarized else None
    if level is None:
        link_key = channel_sql(query.channel_rules, params) if grain == "channel" else _CREDIT_KEYS[grain]
        links = (
            f"SELECT {link_key} AS key, (e.\"occurredAt\" AT TIME ZONE COALESCE(aa.timezone, 'UTC'))::date AS day,\n"
            f'    aa.currency AS currency, {rollup.FEMTO_WEIGHT} AS w, {rollup.FEMTO_WEIGHT}::numeric * e."valueMicros" AS r'
            f"{', l.model::text AS model' if by_model else ''}\n"
            f"  FROM {_CREDIT_FROM.format(model_clause=f'l.model{models}')}"
            f'\n  WHERE s."organizationId" = :org{_filters(query, {**_LINK_FILTERS, "platform": _CREDIT_PLATFORM}, params)}'
            f"{_name_filter(query, params)}"
        )
        sums = _sums(query, {"conv": "w", "rev": f"r{rate}"}, "(x.day < CAST(:start AS date))", post="{}::numeric / 1e15")
        key_not_null = "" if null_key or grain in ("channel", "organization") else " AND x.key IS NOT NULL"
        return (
            f"credit AS (\n  SELECT x.key, {_report_day(query, _shifted('x.day'))} AS day, {sums}, {_currencies(query, 'x.currency', listing)}"
            f"{', x.model' if by_model else ''}\n  FROM (\n  {links}\n  ) x{fx_join}\n"
            f"  WHERE x.day >= :lo AND x.day <= :hi{key_not_null}\n  {group}\n),\n"
        )
    key = _SUMMARY_KEYS[grain]
    key_not_null = "" if null_key or grain in ("channel", "organization") else f" AND {key} IS NOT NULL"
    sums = _sums(query, {"conv": "x.conversions", "rev": f'x."revenueMicros"{rate}'}, "b.prev")
    return (
        f"credit AS (\n  SELECT {key} AS key, {_report_day(query, 'b.out')} AS day, {sums}, {_currencies(query, 'x.currency', listing)}"
        f"{', x.model::text AS model' if by_model else ''}\n"
        f'  FROM {_bucket_rows(query, params)} JOIN "EngineCreditDaily" x ON x."organizationId" = :org\n'
        f"    AND x.model{models} AND x.level = {level} AND x.span = b.span AND x.day = b.day{fx_join}\n"
        f"  WHERE x.links <> 0{key_not_null}{_filters(query, _SUMMARY_FILTERS, params)}\n"
        f"  {group}\n),\n"
    )


def _metrics_sql(query: MetricsQuery, *, summarized: bool, listing: bool = False) -> tuple[str, dict[str, Any]]:
    lo = query.previous_start if query.compare else query.start
    params: dict[str, Any] = {
        "org": query.organization_id,
        "model": query.model,
        "lo": lo,
        "hi": query.end,
        "start": query.start,
        "ndays": query.days,
        # Local days of any time zone (UTC-12 .. UTC+14) lie within one day either side of the UTC day.
        "lo_ts": datetime.combine(lo - timedelta(days=1), time(), tzinfo=UTC),
        "hi_ts": datetime.combine(query.end + timedelta(days=2), time(), tzinfo=UTC),
    }
    fx, has_spend = query.conversion is not None, query.spend_level > 0
    ctes = [_fx_cte(query.conversion, params)]
    if query.grain == "channel":
        ctes.append(_platform_channels(query, params))
        params["unmapped"] = UNMAPPED
    if has_spend:
        ctes.append(_spend_cte(query, params, listing))
    ctes.append(
        _credit_cte(
            query, params, models=' = CAST(:model AS "AttributionModel")', summarized=summarized, listing=listing,
            null_key=query.grain != "ad",
        )  # fmt: skip
    )
    suffixes = ("", "_p") if query.compare else ("",)
    names = {"spend": "spend_micros", "imp": "impressions", "clk": "clicks", "conv": "conversions", "rev": "revenue_micros"}
    cols = []
    known = _spend_known(query, params) if has_spend else "false"
    for suffix in suffixes:
        for column, name in names.items():
            side = "c" if column in _CREDIT_MEASURES else "s"
            if side == "s" and not has_spend:
                cols.append(f"NULL::bigint AS {name}{suffix}")
                continue
            value = f"COALESCE({side}.{column}{suffix}, 0)"
            cast = "::float8" if column == "conv" else "::bigint"
            value = f"{'round(' + value + ')' if column in ('spend', 'rev') else value}{cast}"
            cols.append(f"{value if side == 'c' else f'CASE WHEN {known} THEN {value} END'} AS {name}{suffix}")
    # One side (spend, credit) per key and day: joined, not aggregated again. Days only key daily reports.
    if has_spend:
        on = "s.key = c.key" + (" AND s.day = c.day" if query.daily else "")
        source = f"spend s FULL JOIN credit c ON {on}"
        key, day = "COALESCE(s.key, c.key)", "COALESCE(s.day, c.day)"
        sides = ("s", "c")
    else:
        source, key, day, sides = "credit c", "c.key", "c.day", ("c",)
    if listing:
        currencies = "concat_ws(',', " + ", ".join(f"{s}.clist" for s in sides) + ")"
        lo_c = hi_c = "NULL::text"
    else:
        lo_c = f"LEAST({', '.join(f'{s}.cmin' for s in sides)})"  # LEAST and GREATEST skip nulls
        hi_c = f"GREATEST({', '.join(f'{s}.cmax' for s in sides)})"
        currencies = f"CASE WHEN {lo_c} <> {hi_c} THEN concat_ws(',', {lo_c}, {hi_c}) END"
    missing = ("NULLIF(concat_ws(',', " + ", ".join(f"{s}.miss" for s in sides) + "), '')") if fx else "NULL::text"
    ctes.append(
        f"agg AS (\n  SELECT {key} AS key, {day} AS day,\n    " + ",\n    ".join(cols) + ",\n"
        f"    CASE WHEN {lo_c} = {hi_c} THEN {lo_c} END AS single_currency, {currencies} AS currencies,\n"
        f"    {missing} AS missing_rates\n  FROM {source}\n)\n"
    )
    out = [f"r.{name}{suffix} AS {name}{suffix}" for suffix in suffixes for name in BASE_METRICS]
    join, name_expr = _NAMES[query.grain]
    currency = "CAST(:target AS text)" if fx else "r.single_currency"
    if fx:
        params["target"] = query.conversion.target  # type: ignore[union-attr]
    sql = (
        "WITH " + "".join(ctes)
        + f"SELECT r.key, {name_expr} AS name, {currency} AS currency, r.day, r.currencies, r.missing_rates,\n    "
        + ",\n    ".join(out)
        + f"\n  FROM agg r{f' LEFT JOIN {join}' if join else ''}\n  ORDER BY r.key, r.day"
    )
    return sql, params


def _spend_known(query: MetricsQuery, params: dict[str, Any]) -> str:
    """SQL (over ``spend s FULL JOIN credit c``): whether a row's key is something the ad platforms report
    spend for, so that no spend row means zero spend (platforms leave out days without delivery) rather
    than unknown (null): a key with spend rows; an ad account, campaign or ad; a platform the organization
    has an ad account on; the organization when it has an ad account (on the filtered platform); a channel with
    spend rows (the unmapped row too) or that the spend of a platform the organization has an ad account on
    maps to. Not the row of the credit that resolves to no key of the grain."""
    if query.grain in ("ad_account", "campaign", "ad"):
        return "COALESCE(s.key, c.key) IS NOT NULL"
    if query.grain == "channel":  # the unmapped row has a null key: spend rows are told by their sums
        rows = "s.spend IS NOT NULL" + (" OR s.spend_p IS NOT NULL" if query.compare else "")
        accounts = (
            'SELECT 1 FROM "AdAccount" ka JOIN "Platform" kp ON kp.id = ka."platformId"'
            ' JOIN chmap kc ON kc.platform = kp.code::text WHERE ka."organizationId" = :org AND kc.channel = c.key'
        )
        if query.platform is not None:
            params["f_platform"] = query.platform
            accounts += " AND kp.code::text = CAST(:f_platform AS text)"
        return f"({rows} OR EXISTS ({accounts}))"
    accounts = 'SELECT 1 FROM "AdAccount" ka JOIN "Platform" kp ON kp.id = ka."platformId" WHERE ka."organizationId" = :org'
    if query.grain == "platform":
        accounts += " AND kp.code::text = c.key"
    elif query.platform is not None:
        params["f_platform"] = query.platform
        accounts += " AND kp.code::text = CAST(:f_platform AS text)"
    return f"(s.key IS NOT NULL OR EXISTS ({accounts}))"


def _div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """``num / den`` as a float, null when ``den`` is zero or null."""
    return pl.when(den != 0).then(num.cast(pl.Float64) / den.cast(pl.Float64))


@functools.cache
def _derived(compare: bool) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Expressions of the :data:`RATIO_METRICS` (and, with ``compare``, their previous values) and of the
    ``_change`` columns; built once (reports run them on a few thousand rows, where building costs more)."""
    ratios = [e for suffix in (("", "_previous") if compare else ("",)) for e in _ratios(suffix)]
    changes = [_div(pl.col(n), pl.col(f"{n}_previous")).sub(1).alias(f"{n}_change") for n in METRICS] if compare else []
    return ratios, changes


def _ratios(suffix: str) -> list[pl.Expr]:
    """The :data:`RATIO_METRICS` of the base metrics with ``suffix`` (money rounded half away from zero)."""
    s, i, k, c, r = (pl.col(f"{n}{suffix}") for n in ("spend_micros", "impressions", "clicks", "conversions", "revenue_micros"))

    def micros(e: pl.Expr) -> pl.Expr:
        return e.round(0, mode="half_away_from_zero").cast(pl.Int64)

    exprs = {"roas": _div(r, s), "cpa_micros": micros(_div(s, c)), "cpc_micros": micros(_div(s, k)),
             "ctr": _div(k, i), "conversion_rate": _div(c, k)}  # fmt: skip
    return [e.alias(f"{n}{suffix}") for n, e in exprs.items()]


def _schema(query: MetricsQuery) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {key_column(query.grain): pl.String(), "name": pl.String(), "currency": pl.String()}
    if query.daily:
        schema["date"] = pl.Date()
    schema.update(METRICS)
    if query.compare:
        schema.update({f"{n}_previous": t for n, t in METRICS.items()})
        schema.update({f"{n}_change": pl.Float64() for n in METRICS})
    return schema


def read_metrics(query: MetricsQuery, connection: Connection, *, require_results: bool = False) -> pl.DataFrame:
    """The report ``query`` asks for, computed by Postgres in one query.

    Parameters
    ----------
    query
        What to report (organization, period, model, grain, filters, currency conversion).
    connection
        An open SQLAlchemy connection (psycopg driver); not closed here.
    require_results
        Refuse a report whose rows credit no conversion when the organization has no attribution link of
        ``query.model`` (and ``query.conversion_name``) at all: a model never run would read as zero conversions
        and a ROAS of 0. Spend-only readers (spend alerts) leave it off.

    Returns
    -------
    polars.DataFrame
        One row per key (and day with ``daily``) that has spend or attributed conversions in the period or
        the previous one, sorted by key and day, and the row (key null, last) of the conversions credited
        to touchpoints with no key of the grain (not at grain ``ad``): the key column (:func:`key_column`), ``name``,
        ``currency``, ``date`` (``daily`` only), the :data:`METRICS` and, with ``compare``, their
        ``_previous`` and ``_change`` columns.

    Raises
    ------
    CurrencyError
        If a row would add up amounts in several currencies and ``query.conversion`` is None, or the
        conversion has no rate for a currency found.
    NotFoundError
        With ``require_results``, if the rows credit nothing and the organization has no link of the model.

    Examples
    --------
    >>> q = MetricsQuery("org_1", date(2024, 5, 1), date(2024, 5, 31), grain="campaign")  # doctest: +SKIP
    >>> read_metrics(q, connection).select("campaign_id", "spend_micros", "roas")  # doctest: +SKIP
    """
    summarized = is_summarized(connection, query.organization_id)
    sql, params = _metrics_sql(query, summarized=summarized)
    result = connection.execute(text(sql), params)
    names = list(result.keys())
    rows = result.all()
    at = {name: i for i, name in enumerate(names)}
    key, currencies, missing = at["key"], at["currencies"], at["missing_rates"]
    mixed = {r[key]: r[currencies] for r in rows if r[currencies]}
    _check_currencies(query, connection, summarized, mixed, [r[missing] for r in rows if r[missing]])
    schema = _schema(query)
    dtypes = {**schema, "key": pl.String(), "day": pl.Date(), "currencies": pl.String(), "missing_rates": pl.String()}
    for name in BASE_METRICS:
        dtypes[f"{name}_p"] = dtypes[name]
    frame = pl.DataFrame(rows, schema={n: dtypes[n] for n in names}, orient="row").lazy()
    previous = {f"{n}_p": f"{n}_previous" for n in BASE_METRICS} if query.compare else {}
    frame = frame.rename({"key": key_column(query.grain), "day": "date", **previous})
    ratios, changes = _derived(query.compare)
    frame = frame.with_columns(ratios)
    if changes:
        frame = frame.with_columns(changes)
    floats = [n for n, t in schema.items() if t == pl.Float64()]
    out = frame.select(list(schema)).with_columns(_finite(n) for n in floats).collect()
    credited = any(out[n].abs().sum() for n in ("conversions", "conversions_previous") if n in out.columns)
    if require_results and out.height and not credited and not has_attribution_results(query, connection):
        raise NotFoundError(no_results_message(query))
    return out


def has_attribution_results(query: MetricsQuery, connection: Connection) -> bool:
    """Whether the organization has any attribution link of ``query.model`` (and ``query.conversion_name``),
    in any period: without one, a report's zero conversions and ROAS of 0 mean "never run", not "none"."""
    params: dict[str, Any] = {"org": query.organization_id, "model": query.model}
    name = _name_filter(query, params)
    found = connection.execute(
        text(
            'SELECT EXISTS (SELECT 1 FROM "TrackingSite" s\n'
            '  JOIN "TrackingEvent" e ON e."siteId" = s.id AND e.type = \'CONVERSION\'\n'
            '  JOIN "AttributionLink" l ON l."conversionId" = e.id AND l.model = CAST(:model AS "AttributionModel")\n'
            f'  WHERE s."organizationId" = :org{name})'
        ),
        params,
    ).scalar()
    return bool(found)


def no_results_message(query: MetricsQuery) -> str:
    """The one line that says a report's model (or conversion type) has no attribution results."""
    what = f"model {query.model}"
    if query.conversion_name is not None:
        what += f" and conversion name {query.conversion_name!r}"
    return (
        f"no attribution results for {what} in this organization: its conversions and ROAS would read 0;"
        " run the engine with this model (optiq run, attributionSettings.models) or ask for one it ran"
    )


def _check_currencies(
    query: MetricsQuery, connection: Connection, summarized: bool, mixed: Mapping[str, str], missing: list[str]
) -> None:
    """Raise :class:`CurrencyError` for ``mixed`` rows (key -> two of its currencies; a second query lists
    them all) or ``missing`` rates (comma-separated currencies without a rate)."""
    if mixed and query.conversion is None:
        sql, params = _metrics_sql(query, summarized=summarized, listing=True)
        rows = connection.execute(text(f"SELECT key, currencies FROM ({sql}) t"), params).all()
        found = {k: sorted(set(v.split(","))) for k, v in rows if v and len(set(v.split(","))) > 1}
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(found.items())[:5])
        raise CurrencyError(
            f"{len(found)} {key_column(query.grain)} row(s) would add up amounts in different currencies ({shown}); "
            f"report at a grain with one currency per row (ad_account, campaign, ad), filter to one ad account, or "
            f"pass a CurrencyConversion(target=..., rates=...) to convert",
            found,
        )
    absent = sorted({c for m in missing for c in m.split(",")})
    if absent:
        assert query.conversion is not None
        raise CurrencyError(
            f"no conversion rate to {query.conversion.target} for {', '.join(absent)}; add them to "
            f"CurrencyConversion.rates",
            {c: [c] for c in absent},
        )


def _finite(name: str) -> pl.Expr:
    """Null instead of NaN or infinity (none are expected; this keeps the promise if one slips through)."""
    col = pl.col(name)
    return pl.when(col.is_finite()).then(col).otherwise(None).alias(name)


def read_credit(
    connection: Connection,
    *,
    organization_id: str,
    start: date,
    end: date,
    models: list[str] | tuple[str, ...] | None = None,
    grain: Grain = "channel",
    channel_rules: ChannelRules | None = None,
    conversion_name: str | None = None,
) -> pl.DataFrame:
    """Attributed conversions and revenue per key and model, as the engine wrote them to ``AttributionLink``.

    Parameters
    ----------
    connection
        An open SQLAlchemy connection; not closed here.
    organization_id, start, end
        The tenant and the days (inclusive) conversions occurred on.
    models
        ``AttributionModel`` values; default every model with links.
    grain
        Key to group by (:data:`GRAINS`); ``organization`` gives one row per model.
    conversion_name
        Only the conversions of this type (``TrackingEvent.name``; :class:`MetricsQuery`).

    Returns
    -------
    polars.DataFrame
        Columns: the key column, ``model``, ``conversions`` (float64, sum of weights) and
        ``revenue_micros`` (int64, sum of weight x conversion value), sorted by key and model. Revenue is
        the conversions' value as tracked, not converted between currencies.
    """
    models = tuple(models) if models else ATTRIBUTION_MODELS
    bad = [m for m in models if m not in ATTRIBUTION_MODELS]
    if bad:
        raise ConfigError(f"unknown model(s) {bad}; valid: {', '.join(ATTRIBUTION_MODELS)}")
    query = MetricsQuery(organization_id, start, end, grain=grain, compare=False, channel_rules=channel_rules,
                         conversion_name=conversion_name)  # fmt: skip
    params: dict[str, Any] = {
        "org": organization_id,
        "models": list(models),
        "lo": start,
        "hi": end,
        "start": start,
        "lo_ts": datetime.combine(start - timedelta(days=1), time(), tzinfo=UTC),
        "hi_ts": datetime.combine(end + timedelta(days=2), time(), tzinfo=UTC),
    }
    summarized = is_summarized(connection, organization_id)
    credit = _credit_cte(
        query, params, models=' = ANY(CAST(:models AS "AttributionModel"[]))', summarized=summarized, by_model=True
    )
    sql = (
        f"WITH {credit.rstrip().rstrip(',')}\nSELECT key, model, sum(conv)::float8 AS conversions, "
        "round(COALESCE(sum(rev), 0))::bigint AS revenue_micros FROM credit GROUP BY key, model ORDER BY key, model"
    )
    rows = connection.execute(text(sql), params).all()
    schema = {key_column(grain): pl.String(), "model": pl.String(), "conversions": pl.Float64(), "revenue_micros": pl.Int64()}
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


def finite_or_none(value: float | None) -> float | None:
    """``value`` unless it is NaN or infinite (JSON has neither)."""
    return None if value is None or not math.isfinite(value) else value
