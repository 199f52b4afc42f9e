"""Whether a rule's condition holds: the metrics its config names, read and judged (:class:`Finding`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import polars as pl
from sqlalchemy import Connection, text

from .. import conditions as cond
from ..anomaly import robust_zscore
from ..metrics import MetricsQuery, has_attribution_results, no_results_message, read_metrics

__all__ = ["ESCALATION_FACTOR", "Finding"]

logger = logging.getLogger(__name__)

#: A breach this many times the rule's margin makes the event CRITICAL.
ESCALATION_FACTOR = 2.0


@dataclass(frozen=True)
class Finding:
    """What one evaluation found: ``state`` ``fired``, ``clear`` or ``unknown`` (cannot tell).

    Parameters
    ----------
    state
        ``"fired"`` (the condition holds), ``"clear"`` or ``"unknown"`` (no data, too short a baseline).
    title, message
        The event's title and message when it fires (default empty).
    context
        What was measured, stored in the event's ``context`` (default empty).
    escalate
        The breach is at least :data:`ESCALATION_FACTOR` times the rule's margin: the event is CRITICAL
        (default False).
    """

    state: Literal["fired", "clear", "unknown"]
    title: str = ""
    message: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    escalate: bool = False


# --- reading what a rule looks at ------------------------------------------------------------------------
def _today(now: datetime) -> date:
    return now.astimezone(UTC).date()


def _query(scope: cond.Scope, org: str, start: date, end: date, **kwargs: Any) -> MetricsQuery:
    return MetricsQuery(
        org,
        start,
        end,
        model=scope.model,
        grain="organization",
        platform=scope.platform,
        ad_account_id=scope.ad_account_id,
        campaign_id=scope.campaign_id,
        ad_id=scope.ad_id,
        **kwargs,
    )


#: Metrics that do not depend on the attribution model (a custom rule on them needs no attribution results).
_DELIVERY_METRICS = frozenset({"spend_micros", "impressions", "clicks", "cpc_micros", "ctr"})


def _totals(connection: Connection, query: MetricsQuery) -> dict[str, Any]:
    frame = read_metrics(query, connection)
    if frame.height:
        return frame.row(0, named=True)
    zeros = {c: (0 if not c.endswith("_change") else None) for c in frame.columns}
    zeros |= {c: None for c in ("roas", "cpa_micros", "cpc_micros", "ctr", "conversion_rate")}
    zeros |= {f"{c}_previous": None for c in ("roas", "cpa_micros", "cpc_micros", "ctr", "conversion_rate")}
    return zeros | {"currency": None, "name": None}


def _never_ran(connection: Connection, query: MetricsQuery, totals: Mapping[str, Any]) -> bool:
    """Whether ``totals`` credit nothing because the scope's model never ran for the organization (its
    conversions, CPA and ROAS would read 0 and fire rules), not because nothing converted."""
    credited = totals.get("conversions") or totals.get("conversions_previous")
    return not credited and not has_attribution_results(query, connection)


def _money(micros: int | float | None, currency: str | None) -> str:
    if micros is None:
        return "n/a"
    return f"{micros / 1_000_000:,.2f}" + (f" {currency}" if currency else "")


def _scope_names(connection: Connection, org: str, scope: cond.Scope) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for key, table, value in (
        ("adAccountName", "AdAccount", scope.ad_account_id),
        ("campaignName", "Campaign", scope.campaign_id),
        ("adName", "Ad", scope.ad_id),
    ):
        if value is not None:
            names[key] = connection.execute(
                text(f'SELECT name FROM "{table}" WHERE id = :id AND "organizationId" = :org'),
                {"id": value, "org": org},
            ).scalar()
    if scope.platform:
        names["platform"] = scope.platform
    return names


def _scope_label(names: dict[str, Any]) -> str:
    for key in ("adName", "campaignName", "adAccountName", "platform"):
        if names.get(key):
            return str(names[key])
    return "the organization"


def _window(now: datetime, days: int) -> tuple[date, date]:
    """The last ``days`` complete (UTC) days before ``now``."""
    end = _today(now) - timedelta(days=1)
    return end - timedelta(days=days - 1), end


def _check(connection: Connection, rule: Mapping[str, Any], config: cond.RuleConfig, now: datetime) -> Finding:
    org, name = rule["organizationId"], rule["name"]
    names = _scope_names(connection, org, config.scope)
    where = _scope_label(names)
    base = {**names, "model": config.scope.model, "evaluatedAt": now.isoformat()}
    if isinstance(config, cond.SpendThreshold):
        return _check_spend(connection, rule, config, now, base, where)
    if isinstance(config, cond.ClickAnomaly):
        return _check_clicks(connection, rule, config, now, base, where)
    if isinstance(config, cond.Custom):
        return _check_custom(connection, rule, config, now, base, where)
    start, end = _window(now, config.days)
    query = _query(config.scope, org, start, end)
    t = _totals(connection, query)
    if _never_ran(connection, query, t):  # conversions, CPA and ROAS of a model never run are unknown, not 0
        return Finding("unknown", context=base | {"reason": no_results_message(query)})
    window = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "comparisonPeriod": f"{config.days}d",
        "currency": t["currency"],
    }
    check = {cond.ConversionDrop: _check_conversions, cond.CpaSpike: _check_cpa, cond.RoasDrop: _check_roas}
    return check[type(config)](name, config, t, base | window, where)  # type: ignore[operator]


def _check_spend(connection: Connection, rule, config: cond.SpendThreshold, now, base, where) -> Finding:
    org, name = rule["organizationId"], rule["name"]
    today = _today(now)
    start = {"daily": today, "weekly": today - timedelta(days=6), "monthly": today.replace(day=1)}[config.period]
    t = _totals(connection, _query(config.scope, org, start, today, compare=False))
    spend, cur = t["spend_micros"], t["currency"]
    context = base | {
        "currentSpend": spend,
        "threshold": config.threshold,
        "period": config.period,
        "currency": cur,
        "from": start.isoformat(),
        "to": today.isoformat(),
    }
    if spend is None or spend <= config.threshold:  # None: no ad account (on the platform) to spend
        return Finding("clear", context=context)
    return Finding(
        "fired",
        f"Spend threshold exceeded: {name}",
        f"{config.period.capitalize()} spend of {where} is {_money(spend, cur)} since {start.isoformat()}, above the "
        f"threshold of {_money(config.threshold, cur)}.",
        context,
        spend >= ESCALATION_FACTOR * config.threshold,
    )


def _check_conversions(name: str, config: cond.ConversionDrop, t, base, where) -> Finding:
    current, previous = t["conversions"], t["conversions_previous"]
    context = base | {
        "currentConversions": current,
        "previousConversions": previous,
        "dropPercentage": config.drop_percentage,
    }
    if previous is None or previous < config.min_conversions or previous <= 0:
        return Finding("unknown", context=context)
    drop = 100.0 * (previous - current) / previous
    context["actualDropPercentage"] = round(drop, 4)
    if drop < config.drop_percentage:
        return Finding("clear", context=context)
    return Finding(
        "fired",
        f"Conversions dropped {drop:.0f}%: {name}",
        f"Attributed conversions of {where} fell from {previous:,.2f} to {current:,.2f} ({drop:.1f}%) over the last "
        f"{config.days} days compared with the {config.days} days before (alert at {config.drop_percentage:g}%).",
        context,
        drop >= min(100.0, ESCALATION_FACTOR * config.drop_percentage),
    )


def _check_cpa(name: str, config: cond.CpaSpike, t, base, where) -> Finding:
    current, previous = t["cpa_micros"], t["cpa_micros_previous"]
    context = base | {
        "currentCpa": current,
        "previousCpa": previous,
        "increasePercentage": config.increase_percentage,
        "currentConversions": t["conversions"],
        "previousConversions": t["conversions_previous"],
    }
    enough = min(t["conversions"] or 0, t["conversions_previous"] or 0) >= config.min_conversions
    if current is None or not previous or not enough:
        return Finding("unknown", context=context)
    rise = 100.0 * (current - previous) / previous
    context["actualIncreasePercentage"] = round(rise, 4)
    if rise < config.increase_percentage:
        return Finding("clear", context=context)
    return Finding(
        "fired",
        f"CPA up {rise:.0f}%: {name}",
        f"Cost per attributed conversion of {where} rose from {_money(previous, t['currency'])} to "
        f"{_money(current, t['currency'])} ({rise:.1f}%) over the last {config.days} days (alert at "
        f"{config.increase_percentage:g}%).",
        context,
        rise >= ESCALATION_FACTOR * config.increase_percentage,
    )


def _check_roas(name: str, config: cond.RoasDrop, t, base, where) -> Finding:
    current, previous = t["roas"], t["roas_previous"]
    context = base | {
        "currentRoas": current,
        "previousRoas": previous,
        "dropPercentage": config.drop_percentage,
        "minRoas": config.min_roas,
    }
    if current is None:
        return Finding("unknown", context=context)
    reasons, escalate = [], False
    if config.drop_percentage is not None and previous:
        drop = 100.0 * (previous - current) / previous
        context["actualDropPercentage"] = round(drop, 4)
        if drop >= config.drop_percentage:
            reasons.append(f"fell {drop:.1f}% from {previous:.2f} (alert at {config.drop_percentage:g}%)")
            escalate |= drop >= min(100.0, ESCALATION_FACTOR * config.drop_percentage)
    if config.min_roas is not None and current < config.min_roas:
        reasons.append(f"is below the minimum of {config.min_roas:g}")
        escalate |= current <= config.min_roas / ESCALATION_FACTOR
    if not reasons:
        return Finding("clear", context=context)
    return Finding(
        "fired",
        f"ROAS {current:.2f}: {name}",
        f"ROAS of {where} over the last {config.days} days is {current:.2f}: it " + " and ".join(reasons) + ".",
        context,
        escalate,
    )


def _check_clicks(connection: Connection, rule, config: cond.ClickAnomaly, now, base, where) -> Finding:
    start, end = _window(now, config.baseline_days + 1)
    frame = read_metrics(
        _query(config.scope, rule["organizationId"], start, end, daily=True, compare=False), connection
    )
    days = pl.DataFrame({"date": pl.date_range(start, end, "1d", eager=True)})
    clicks = days.join(frame.select("date", "clicks"), on="date", how="left").with_columns(
        pl.col("clicks").fill_null(0)
    )
    series = clicks["clicks"].to_list()
    value, history = series[-1], series[:-1]
    if config.seasonal:  # the same weekday only: every 7th day back from the evaluated one
        history = history[::-1][6::7]
    context = base | {
        "date": end.isoformat(),
        "clicks": value,
        "baselineDays": config.baseline_days,
        "seasonal": config.seasonal,
        "threshold": config.threshold,
        "direction": config.direction,
    }
    if len(history) < 4 or sum(history) == 0:
        return Finding("unknown", context=context)
    score = robust_zscore(value, history)
    finite = abs(score.z) != float("inf")
    context |= {
        "baselineMedian": score.median,
        "robustScale": score.scale,
        "zScore": score.z if finite else None,
        "method": score.method,
        "baselinePoints": len(history),
    }
    if not score.is_anomaly(config.threshold, config.direction):
        return Finding("clear", context=context)
    kind = "spike" if score.z > 0 else "drop"
    z_text = f"z = {score.z:.1f}" if finite else "a flat baseline"
    return Finding(
        "fired",
        f"Click {kind} on {end.isoformat()}: {rule['name']}",
        f"{where.capitalize() if where == 'the organization' else where} had {value:,} clicks on {end.isoformat()} against a "
        f"median of {score.median:,.0f} over {len(history)} {'same-weekday ' if config.seasonal else ''}days ({z_text}; "
        f"alert at |z| >= {config.threshold:g}).",
        context,
        abs(score.z) >= ESCALATION_FACTOR * config.threshold,
    )


def _check_custom(connection: Connection, rule, config: cond.Custom, now, base, where) -> Finding:
    cache: dict[int, dict[str, Any]] = {}
    never_ran: dict[str, bool] = {}  # the probe does not depend on the period: asked at most once
    seen: list[dict[str, Any]] = []

    def holds(c: cond.Condition) -> bool | None:
        if isinstance(c, cond.AllOf | cond.AnyOf):
            results = [holds(p) for p in c.conditions]
            if isinstance(c, cond.AllOf):
                return False if False in results else (None if None in results else True)
            return True if True in results else (None if None in results else False)
        start, end = _window(now, c.days)
        query = _query(config.scope, rule["organizationId"], start, end)
        if c.days not in cache:
            cache[c.days] = _totals(connection, query)
        t = cache[c.days]
        if c.metric not in _DELIVERY_METRICS:  # the model's conversions: unknown when it never ran
            if "model" not in never_ran:
                never_ran["model"] = _never_ran(connection, query, t)
            if never_ran["model"]:
                seen.append(
                    {
                        "metric": c.metric,
                        "period": f"{c.days}d",
                        "actual": None,
                        "holds": None,
                        "reason": no_results_message(query),
                    }
                )
                return None
        if c.compare == "value":
            actual = t[c.metric]
        else:
            change = t[f"{c.metric}_change"]
            actual = None if change is None else 100.0 * change
        result = None if actual is None else bool(cond.OPERATORS[c.operator](actual, c.value))
        seen.append(
            {
                "metric": c.metric,
                "compare": c.compare,
                "period": f"{c.days}d",
                "operator": c.operator,
                "value": c.value,
                "actual": actual,
                "holds": result,
            }
        )
        return result

    verdict = holds(config.condition)
    context = base | {"conditions": seen}
    if verdict is None:
        return Finding("unknown", context=context)
    if not verdict:
        return Finding("clear", context=context)
    parts = [
        f"{s['metric']}{' change %' if s['compare'] != 'value' else ''} over {s['period']} = {s['actual']:.6g} "
        f"{s['operator']} {s['value']:g}"
        for s in seen
        if s["holds"]
    ]
    return Finding("fired", f"Condition met: {rule['name']}", f"For {where}: " + "; ".join(parts) + ".", context)
