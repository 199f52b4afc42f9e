"""What a metrics report asks for: the grains, the metric columns and :class:`MetricsQuery`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import polars as pl

from ...channels import ChannelRules
from ...errors import ConfigError
from ...io.schema import ATTRIBUTION_MODELS, PLATFORM_CODES
from .currency import CurrencyConversion

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
    """The name of the key column of a report at ``grain`` (``"campaign"`` -> ``"campaign_id"``).

    Parameters
    ----------
    grain
        One of :data:`GRAINS`.

    Returns
    -------
    str

    Raises
    ------
    KeyError
        An unknown grain (:class:`MetricsQuery` refuses one first).
    """
    return _KEY_COLUMNS[grain]


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

    Raises
    ------
    ConfigError
        An empty ``organization_id``; ``start`` / ``end`` not dates, outside 1970-01-01 .. 2999-12-31, or
        reversed; a period over 3660 days; an unknown ``model``, ``grain`` or ``platform``; an empty id or
        ``conversion_name``.
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
