"""The SQL of a metrics report: one query, built from CTEs (currency rates, the channel of each platform's
spend, spend, credit) joined per key and day (docs/service.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from ...channels import CLICK_ID_COLUMNS, DEFAULT_CHANNEL_RULES, channel_sql
from ...io import rollup
from .currency import _currencies, _fx_cte
from .query import _GRAIN_LEVEL, BASE_METRICS, PLATFORM_CLICK_IDS, UNMAPPED, MetricsQuery

_ORG_SCOPED = ' AND {alias}."organizationId" = :org'
# Spend rows (alias m: scope id, day, impressions, clicks, spend) joined up the hierarchy, by spend level.
_SPEND_JOINS = {
    1: ' JOIN "AdAccount" aa ON aa.id = m.sid' + _ORG_SCOPED.format(alias="aa"),
    2: (
        ' JOIN "Campaign" c ON c.id = m.sid'
        + _ORG_SCOPED.format(alias="c")
        + ' JOIN "AdAccount" aa ON aa.id = c."adAccountId"'
        + _ORG_SCOPED.format(alias="aa")
    ),
    3: (
        ' JOIN "Ad" ad ON ad.id = m.sid'
        + _ORG_SCOPED.format(alias="ad")
        + ' JOIN "Campaign" c ON c.id = ad."campaignId"'
        + _ORG_SCOPED.format(alias="c")
        + ' JOIN "AdAccount" aa ON aa.id = c."adAccountId"'
        + _ORG_SCOPED.format(alias="aa")
    ),
}
_CREDIT_FROM = (
    '"TrackingSite" s\n'
    '  JOIN "TrackingEvent" e ON e."siteId" = s.id AND e.type = \'CONVERSION\'\n'
    '    AND e."occurredAt" >= :lo_ts AND e."occurredAt" < :hi_ts\n'
    '  JOIN "AttributionLink" l ON l."conversionId" = e.id AND {model_clause}\n'
    '  JOIN "TouchPoint" tp ON tp.id = l."touchPointId" AND tp."siteId" = s.id\n'
    '  LEFT JOIN "Ad" ad ON ad.id = tp."adId"' + _ORG_SCOPED.format(alias="ad") + "\n"
    '  LEFT JOIN "Campaign" c ON c.id = COALESCE(tp."campaignId", ad."campaignId")'
    + _ORG_SCOPED.format(alias="c")
    + "\n"
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


_SPEND_MEASURES = {"imp": "impressions", "clk": "clicks", "spend": '"spendMicros"'}
_CREDIT_MEASURES = ("conv", "rev")


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
        sums = _sums(
            query, {"conv": "w", "rev": f"r{rate}"}, "(x.day < CAST(:start AS date))", post="{}::numeric / 1e15"
        )
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
            query,
            params,
            models=' = CAST(:model AS "AttributionModel")',
            summarized=summarized,
            listing=listing,
            null_key=query.grain != "ad",
        )
    )
    suffixes = ("", "_p") if query.compare else ("",)
    names = {
        "spend": "spend_micros",
        "imp": "impressions",
        "clk": "clicks",
        "conv": "conversions",
        "rev": "revenue_micros",
    }
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
        sides: tuple[str, ...] = ("s", "c")
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
        "WITH "
        + "".join(ctes)
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
    accounts = (
        'SELECT 1 FROM "AdAccount" ka JOIN "Platform" kp ON kp.id = ka."platformId" WHERE ka."organizationId" = :org'
    )
    if query.grain == "platform":
        accounts += " AND kp.code::text = c.key"
    elif query.platform is not None:
        params["f_platform"] = query.platform
        accounts += " AND kp.code::text = CAST(:f_platform AS text)"
    return f"(s.key IS NOT NULL OR EXISTS ({accounts}))"
