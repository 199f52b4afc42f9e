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

The modules: ``query`` (what a report asks for: :class:`MetricsQuery`, the grains and metric columns),
``currency`` (:class:`CurrencyConversion` and the SQL of currencies), ``sql`` (the query builder: spend and
credit CTEs, joined per key and day), ``probes`` (:func:`is_summarized`, :func:`has_attribution_results`),
``report`` (:func:`read_metrics`: the query run, ratios and checks) and ``credit`` (:func:`read_credit`).
"""

from __future__ import annotations

from ...channels import channel_sql
from .credit import read_credit
from .currency import CurrencyConversion
from .probes import has_attribution_results, is_summarized, no_results_message
from .query import (
    BASE_METRICS,
    GRAINS,
    METRICS,
    PLATFORM_CLICK_IDS,
    RATIO_METRICS,
    UNMAPPED,
    Grain,
    MetricsQuery,
    key_column,
)
from .report import finite_or_none, read_metrics  # noqa: F401  (finite_or_none: imported from here)
from .sql import _metrics_sql  # noqa: F401  (imported from here by tests and benchmarks)

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
