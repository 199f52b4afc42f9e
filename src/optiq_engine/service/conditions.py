"""Alert rule configurations: the ``AlertRule.config`` JSON of each rule type, parsed and validated.

:func:`parse_config` turns the JSON into a frozen dataclass, or raises :class:`RuleConfigError` listing
every bad field (``config.threshold``, ``config.condition.all[1].metric``, ...). Unknown fields are
errors too (a typo must not silently disable a rule). The keys are camelCase like the seed's examples.

Every type accepts the scope fields ``model`` (``AttributionModel``, default ``LAST_TOUCH``),
``platform``, ``adAccountId``, ``campaignId`` and ``adId``. ``CUSTOM`` conditions are data, never code:
a comparison ``{"metric", "operator", "value", "period", "compare"}`` or ``{"all": [...]}`` /
``{"any": [...]}`` of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from ..config import json_bool, json_number
from ..errors import close_matches
from ..io.schema import ALERT_TYPES, ATTRIBUTION_MODELS, PLATFORM_CODES
from .errors import RuleConfigError
from .metrics import METRICS

__all__ = [
    "Scope",
    "SpendThreshold",
    "ConversionDrop",
    "CpaSpike",
    "RoasDrop",
    "ClickAnomaly",
    "Comparison",
    "AllOf",
    "AnyOf",
    "Custom",
    "RuleConfig",
    "OPERATORS",
    "parse_config",
    "parse_period",
]

#: CUSTOM comparison operators (applied in Python to numbers, never evaluated as text).
OPERATORS: dict[str, Any] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_PERIOD = re.compile(r"^([1-9][0-9]{0,2})d$")
_MAX_DAYS = 365
_MAX_CONDITIONS = 20
_MAX_DEPTH = 4


@dataclass(frozen=True)
class Scope:
    """Which links and spend a rule looks at: a model and optional platform / account / campaign / ad.

    Parameters
    ----------
    model
        The ``AttributionModel`` whose links are read (config ``model``; default ``"LAST_TOUCH"``).
    platform
        A ``PlatformCode`` (config ``platform``); None: every platform.
    ad_account_id, campaign_id, ad_id
        Ids of the organization's ``AdAccount`` / ``Campaign`` / ``Ad`` (config ``adAccountId``,
        ``campaignId``, ``adId``); None: no restriction.
    """

    model: str = "LAST_TOUCH"
    platform: str | None = None
    ad_account_id: str | None = None
    campaign_id: str | None = None
    ad_id: str | None = None


@dataclass(frozen=True)
class SpendThreshold:
    """Fires when spend in the current ``period`` (today, the last 7 days, the month to date) exceeds ``threshold``.

    Parameters
    ----------
    scope
        Which links and spend the rule looks at (:class:`Scope`).
    threshold
        Spend in micros (> 0; config ``threshold``).
    period
        ``"daily"`` (default), ``"weekly"`` or ``"monthly"`` (UTC days, today included).
    """

    scope: Scope
    threshold: int
    period: Literal["daily", "weekly", "monthly"] = "daily"


@dataclass(frozen=True)
class ConversionDrop:
    """Fires when attributed conversions of the last ``days`` complete days fell by ``drop_percentage`` or more.

    Parameters
    ----------
    scope
        Which links and spend the rule looks at (:class:`Scope`).
    drop_percentage
        The fall, in percent of the previous period (0 < x <= 100; config ``dropPercentage``).
    days
        The period's length in complete UTC days, compared with the ``days`` before (default 7; config
        ``comparisonPeriod``, ``"7d"``).
    min_conversions
        Conversions the previous period needs for a comparison (>= 0, default 1; config ``minConversions``).
    """

    scope: Scope
    drop_percentage: float
    days: int = 7
    min_conversions: float = 1.0


@dataclass(frozen=True)
class CpaSpike:
    """Fires when CPA of the last ``days`` complete days rose by ``increase_percentage`` or more.

    Parameters
    ----------
    scope
        Which links and spend the rule looks at (:class:`Scope`).
    increase_percentage
        The rise, in percent of the previous period's CPA (> 0; config ``increasePercentage``).
    days
        As :class:`ConversionDrop` (default 7).
    min_conversions
        Conversions each period needs for a CPA (> 0, default 1; config ``minConversions``).
    """

    scope: Scope
    increase_percentage: float
    days: int = 7
    min_conversions: float = 1.0


@dataclass(frozen=True)
class RoasDrop:
    """Fires when ROAS fell by ``drop_percentage`` or more, or is below ``min_roas`` (either given, or both).

    Parameters
    ----------
    scope
        Which links and spend the rule looks at (:class:`Scope`).
    drop_percentage
        The fall, in percent of the previous period's ROAS (0 < x <= 100; config ``dropPercentage``); None:
        no such test.
    min_roas
        The lowest acceptable ROAS (revenue / spend, >= 0; config ``minRoas``); None: no such test.
    days
        As :class:`ConversionDrop` (default 7).
    """

    scope: Scope
    drop_percentage: float | None = None
    min_roas: float | None = None
    days: int = 7


@dataclass(frozen=True)
class ClickAnomaly:
    """Fires when yesterday's clicks are anomalous against the ``baseline_days`` before (robust z-score).

    Parameters
    ----------
    scope
        Which links and spend the rule looks at (:class:`Scope`).
    baseline_days
        Days of the baseline, 7 to 365 (default 28; config ``baselineDays``).
    threshold
        The ``|z|`` of an anomaly (> 0, default 3.5; :func:`~optiq_engine.service.anomaly.robust_zscore`).
    direction
        ``"both"`` (default), ``"drop"`` or ``"spike"``.
    seasonal
        Compare with the same weekday of the baseline only (needs ``baseline_days >= 28``; default False).
    """

    scope: Scope
    baseline_days: int = 28
    threshold: float = 3.5
    direction: Literal["both", "drop", "spike"] = "both"
    seasonal: bool = False


@dataclass(frozen=True)
class Comparison:
    """``metric`` over the last ``days`` complete days (or its relative change in percent) ``operator`` ``value``.

    Parameters
    ----------
    metric
        A metric of :data:`optiq_engine.service.metrics.METRICS` (``"cpa_micros"``, ``"roas"``, ...).
    operator
        A key of :data:`OPERATORS` (``">"``, ``">="``, ``"<"``, ``"<="``, ``"=="``, ``"!="``).
    value
        The number compared with (finite).
    days
        The period in complete UTC days (default 1; config ``period``, ``"7d"``).
    compare
        ``"value"`` (default): the metric itself; ``"changePercent"``: its change against the days before, in
        percent.
    """

    metric: str
    operator: str
    value: float
    days: int = 1
    compare: Literal["value", "changePercent"] = "value"


@dataclass(frozen=True)
class AllOf:
    """Holds when every one of ``conditions`` holds (config ``{"all": [...]}``).

    Parameters
    ----------
    conditions
        Comparisons or nested groups (non-empty; at most 4 levels and 20 comparisons per rule).
    """

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """Holds when at least one of ``conditions`` holds (config ``{"any": [...]}``).

    Parameters
    ----------
    conditions
        As :class:`AllOf`.
    """

    conditions: tuple[Condition, ...]


Condition = Comparison | AllOf | AnyOf


@dataclass(frozen=True)
class Custom:
    """Fires when the declarative ``condition`` holds.

    Parameters
    ----------
    scope
        Which links and spend the rule looks at (:class:`Scope`).
    condition
        A :class:`Comparison`, :class:`AllOf` or :class:`AnyOf` (config ``condition``).
    """

    scope: Scope
    condition: Condition


RuleConfig = SpendThreshold | ConversionDrop | CpaSpike | RoasDrop | ClickAnomaly | Custom


def parse_period(value: str) -> int:
    """Days in a period like ``"7d"`` (1 to 365).

    Parameters
    ----------
    value
        ``"<n>d"``, ``n`` from 1 to 365 without leading zeros.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Any other value (:func:`parse_config` turns it into a field of its :class:`RuleConfigError`).
    """
    match = _PERIOD.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) > _MAX_DAYS:
        raise ValueError(f"a number of days like '7d' (1d to {_MAX_DAYS}d), got {value!r}")
    return int(match.group(1))


class _Fields:
    """Reads fields of a JSON object, collecting one error per bad field instead of stopping at the first."""

    def __init__(self, obj: Any, path: str, errors: dict[str, str]) -> None:
        self.path, self.errors = path, errors
        self.seen: set[str] = set()
        self.obj = obj if isinstance(obj, dict) else {}
        if not isinstance(obj, dict):
            errors[path] = f"must be a JSON object, got {type(obj).__name__}"

    def _err(self, key: str, message: str) -> None:
        self.errors[f"{self.path}.{key}"] = message

    def get(self, key: str, check, default: Any = None, *, required: bool = False, hint: str = "") -> Any:
        self.seen.add(key)
        if key not in self.obj or self.obj[key] is None:
            if required:
                self._err(key, f"required: {hint}")
            return default
        try:
            return check(self.obj[key])
        except (TypeError, ValueError) as exc:
            self._err(key, str(exc))
            return default

    def unknown(self, allowed: tuple[str, ...] = ()) -> None:
        known = self.seen | set(allowed)
        for key in self.obj:
            if key not in known:
                close = close_matches(str(key), sorted(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self._err(key, f"unknown field; {hint}expected one of {', '.join(sorted(known))}")


def _choice(values: tuple[str, ...]):
    def check(v: Any) -> str:
        if v not in values:
            raise ValueError(f"must be one of {', '.join(values)}, got {v!r}")
        return v

    return check


def _id(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-empty id string, got {v!r}")
    return v


_SCOPE_KEYS = ("model", "platform", "adAccountId", "campaignId", "adId")


def _scope(f: _Fields) -> Scope:
    return Scope(
        model=f.get("model", _choice(ATTRIBUTION_MODELS), "LAST_TOUCH"),
        platform=f.get("platform", _choice(PLATFORM_CODES)),
        ad_account_id=f.get("adAccountId", _id),
        campaign_id=f.get("campaignId", _id),
        ad_id=f.get("adId", _id),
    )


def _condition(obj: Any, path: str, errors: dict[str, str], depth: int, count: list[int]) -> Condition | None:
    if depth > _MAX_DEPTH:
        errors[path] = f"conditions nest at most {_MAX_DEPTH} levels deep"
        return None
    if isinstance(obj, dict) and ("all" in obj or "any" in obj):
        kind = "all" if "all" in obj else "any"
        f = _Fields(obj, path, errors)
        items = f.get(
            kind, lambda v: v if isinstance(v, list) and v else _raise("must be a non-empty list of conditions")
        )
        f.unknown()
        parts = [
            _condition(item, f"{path}.{kind}[{i}]", errors, depth + 1, count) for i, item in enumerate(items or [])
        ]
        if any(p is None for p in parts) or not parts:
            return None
        return AllOf(tuple(parts)) if kind == "all" else AnyOf(tuple(parts))  # type: ignore[arg-type]
    count[0] += 1
    if count[0] > _MAX_CONDITIONS:
        errors[path] = f"at most {_MAX_CONDITIONS} comparisons per rule"
        return None
    f = _Fields(obj, path, errors)
    metric = f.get("metric", _choice(tuple(METRICS)), required=True, hint=f"one of {', '.join(METRICS)}")
    operator = f.get("operator", _choice(tuple(OPERATORS)), required=True, hint=f"one of {' '.join(OPERATORS)}")
    value = f.get("value", json_number(), required=True, hint="the number to compare with")
    days = f.get("period", parse_period, 1)
    compare = f.get("compare", _choice(("value", "changePercent")), "value")
    f.unknown()
    if None in (metric, operator, value) or not isinstance(obj, dict):
        return None
    return Comparison(metric=metric, operator=operator, value=value, days=days, compare=compare)


def _raise(message: str):
    raise ValueError(message)


def parse_config(rule_type: str, config: Any) -> RuleConfig:
    """The validated configuration of a rule of ``rule_type`` from its ``config`` JSON.

    Parameters
    ----------
    rule_type
        An ``AlertType`` value (``SPEND_THRESHOLD``, ``CONVERSION_DROP``, ``CPA_SPIKE``, ``ROAS_DROP``,
        ``CLICK_ANOMALY``, ``CUSTOM``).
    config
        The parsed ``AlertRule.config`` JSON: an object with camelCase keys.

    Returns
    -------
    RuleConfig
        The dataclass of ``rule_type``.

    Raises
    ------
    RuleConfigError
        Listing every invalid field by path (``config.<field>``), with the allowed values or range.

    Examples
    --------
    >>> parse_config("SPEND_THRESHOLD", {"threshold": 10_000_000, "period": "daily", "adAccountId": "acc_1"})
    SpendThreshold(scope=Scope(model='LAST_TOUCH', platform=None, ad_account_id='acc_1', campaign_id=None, ad_id=None), threshold=10000000, period='daily')
    """
    errors: dict[str, str] = {}
    if rule_type not in ALERT_TYPES:
        raise RuleConfigError({"type": f"must be one of {', '.join(ALERT_TYPES)}, got {rule_type!r}"})
    f = _Fields(config, "config", errors)
    scope = _scope(f)
    days = lambda: f.get("comparisonPeriod", parse_period, 7)  # noqa: E731
    result: RuleConfig | None
    if rule_type == "SPEND_THRESHOLD":
        threshold = f.get(
            "threshold", json_number(0, lo_open=True, integer=True), required=True, hint="spend in micros, > 0"
        )
        period = f.get("period", _choice(("daily", "weekly", "monthly")), "daily")
        result = SpendThreshold(scope, threshold, period)
    elif rule_type == "CONVERSION_DROP":
        drop = f.get("dropPercentage", json_number(0, 100, lo_open=True), required=True, hint="percent, 0 < x <= 100")
        result = ConversionDrop(scope, drop, days(), f.get("minConversions", json_number(0), 1.0))
    elif rule_type == "CPA_SPIKE":
        rise = f.get("increasePercentage", json_number(0, lo_open=True), required=True, hint="percent, > 0")
        result = CpaSpike(scope, rise, days(), f.get("minConversions", json_number(0, lo_open=True), 1.0))
    elif rule_type == "ROAS_DROP":
        drop = f.get("dropPercentage", json_number(0, 100, lo_open=True))
        min_roas = f.get("minRoas", json_number(0))
        if f.obj.get("dropPercentage") is None and f.obj.get("minRoas") is None:  # null is absent: it never fires
            errors["config.dropPercentage"] = (
                "required: dropPercentage (percent, 0 < x <= 100) or minRoas (>= 0), or both"
            )
        result = RoasDrop(scope, drop, min_roas, days())
    elif rule_type == "CLICK_ANOMALY":
        baseline = f.get("baselineDays", json_number(7, _MAX_DAYS, integer=True), 28)
        seasonal = f.get("seasonal", json_bool, False)
        if seasonal and baseline < 28:
            errors["config.baselineDays"] = f"must be >= 28 with seasonal (4 weeks of the same weekday), got {baseline}"
        result = ClickAnomaly(
            scope,
            baseline,
            f.get("threshold", json_number(0, lo_open=True), 3.5),
            f.get("direction", _choice(("both", "drop", "spike")), "both"),
            seasonal,
        )
    else:  # CUSTOM
        f.seen.add("condition")
        if "condition" not in f.obj:
            errors["config.condition"] = 'required: e.g. {"metric": "cpa_micros", "operator": ">", "value": 5000000}'
            condition = None
        else:
            condition = _condition(f.obj["condition"], "config.condition", errors, 1, [0])
        result = Custom(scope, condition) if condition is not None else None
    f.unknown(_SCOPE_KEYS)
    if errors or result is None:
        raise RuleConfigError(errors or {"config": "invalid"}, rule_type=rule_type)
    return result
