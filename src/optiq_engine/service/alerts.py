"""Alert rules over the metrics: evaluation, scheduling across workers, and the alert lifecycle.

An evaluation reads the metrics a rule's config names (:mod:`optiq_engine.service.metrics`), decides
whether its condition holds, and writes the outcome in the same transaction that holds the rule's row
lock (``FOR UPDATE``), so two workers never evaluate one rule for one due time and a rule never has two
open events. The rules (``docs/service.md`` has the full text):

- **open** events are ``TRIGGERED`` or ``ACKNOWLEDGED``. While one is open, a firing condition opens
  nothing new; it may only escalate the open event's severity.
- **severity**: the rule's; ``CRITICAL`` when the breach is at least :data:`ESCALATION_FACTOR` times the
  rule's margin (spend >= 2x the threshold, a drop or spike >= 2x the configured percentage, ROAS below
  half of ``minRoas``, ``|z|`` >= 2x the anomaly threshold). ``CUSTOM`` rules do not escalate.
  Severity only ever goes up on an open event.
- **auto-resolve**: when the condition no longer holds, the open event becomes ``RESOLVED`` with
  ``resolvedBy`` null and ``context.autoResolved = true``. An evaluation that cannot decide (no data,
  too short a baseline) changes nothing.
- **dismissed** alerts stay quiet while their condition holds; once it has cleared
  (``context.clearedAt``), the next breach opens a new event. A manually resolved alert whose condition
  still holds fires again at the next evaluation.
- **notifications**: with ``notifyInApp``, every member of the organization gets an
  ``InAppNotification`` when an event opens, escalates or auto-resolves.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast

import polars as pl
from sqlalchemy import URL, Connection, Engine, create_engine, text

from ..io.schema import ALERT_EVENT_STATUSES, ALERT_SEVERITIES, ALERT_TYPES
from . import conditions as cond
from .anomaly import robust_zscore
from .errors import NotFoundError, PermissionDeniedError, RuleConfigError, TransitionError
from .metrics import MetricsQuery, has_attribution_results, no_results_message, read_metrics

__all__ = [
    "ESCALATION_FACTOR",
    "Finding",
    "Evaluation",
    "evaluate_rule",
    "evaluate_due",
    "evaluate_now",
    "create_rule",
    "read_rules",
    "read_rule",
    "read_events",
    "read_event",
    "acknowledge",
    "resolve",
    "dismiss",
]

logger = logging.getLogger(__name__)

#: A breach this many times the rule's margin makes the event CRITICAL.
ESCALATION_FACTOR = 2.0
OPEN_STATUSES = ("TRIGGERED", "ACKNOWLEDGED")
_PRIORITY = {"INFO": "normal", "WARNING": "high", "CRITICAL": "urgent"}
_RANK = {s: i for i, s in enumerate(ALERT_SEVERITIES)}


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


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating one rule.

    ``action``: ``opened`` (a new event), ``escalated`` (the open event became CRITICAL), ``kept`` (still
    firing, the open event stays), ``resolved`` (auto-resolved), ``suppressed`` (firing but dismissed),
    ``cleared`` (a dismissed alert's condition cleared), ``ok`` (nothing to do), ``unknown`` or ``error``.

    Parameters
    ----------
    rule_id, organization_id
        The rule evaluated and its organization.
    action
        One of the actions above.
    event_id
        The event opened, escalated, kept, resolved, suppressed or cleared (default None).
    error
        With ``action="error"``: the error's class and message (default None).
    """

    rule_id: str
    organization_id: str
    action: str
    event_id: str | None = None
    error: str | None = None


# --- reading what a rule looks at ------------------------------------------------------------------------
def _today(now: datetime) -> date:
    return now.astimezone(UTC).date()


def _query(scope: cond.Scope, org: str, start: date, end: date, **kwargs: Any) -> MetricsQuery:
    return MetricsQuery(
        org, start, end, model=scope.model, grain="organization", platform=scope.platform,
        ad_account_id=scope.ad_account_id, campaign_id=scope.campaign_id, ad_id=scope.ad_id, **kwargs,
    )  # fmt: skip


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
        today = _today(now)
        start = {"daily": today, "weekly": today - timedelta(days=6), "monthly": today.replace(day=1)}[config.period]
        t = _totals(connection, _query(config.scope, org, start, today, compare=False))
        spend, cur = t["spend_micros"], t["currency"]
        context = base | {"currentSpend": spend, "threshold": config.threshold, "period": config.period, "currency": cur,
                          "from": start.isoformat(), "to": today.isoformat()}  # fmt: skip
        if spend is None or spend <= config.threshold:  # None: no ad account (on the platform) to spend
            return Finding("clear", context=context)
        return Finding(
            "fired", f"Spend threshold exceeded: {name}",
            f"{config.period.capitalize()} spend of {where} is {_money(spend, cur)} since {start.isoformat()}, above the "
            f"threshold of {_money(config.threshold, cur)}.",
            context, spend >= ESCALATION_FACTOR * config.threshold,
        )  # fmt: skip
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
    if isinstance(config, cond.ConversionDrop):
        current, previous = t["conversions"], t["conversions_previous"]
        context = base | window | {"currentConversions": current, "previousConversions": previous,
                                   "dropPercentage": config.drop_percentage}  # fmt: skip
        if previous is None or previous < config.min_conversions or previous <= 0:
            return Finding("unknown", context=context)
        drop = 100.0 * (previous - current) / previous
        context["actualDropPercentage"] = round(drop, 4)
        if drop < config.drop_percentage:
            return Finding("clear", context=context)
        return Finding(
            "fired", f"Conversions dropped {drop:.0f}%: {name}",
            f"Attributed conversions of {where} fell from {previous:,.2f} to {current:,.2f} ({drop:.1f}%) over the last "
            f"{config.days} days compared with the {config.days} days before (alert at {config.drop_percentage:g}%).",
            context, drop >= min(100.0, ESCALATION_FACTOR * config.drop_percentage),
        )  # fmt: skip
    if isinstance(config, cond.CpaSpike):
        current, previous = t["cpa_micros"], t["cpa_micros_previous"]
        context = base | window | {"currentCpa": current, "previousCpa": previous, "increasePercentage": config.increase_percentage,
                                   "currentConversions": t["conversions"], "previousConversions": t["conversions_previous"]}  # fmt: skip
        enough = min(t["conversions"] or 0, t["conversions_previous"] or 0) >= config.min_conversions
        if current is None or not previous or not enough:
            return Finding("unknown", context=context)
        rise = 100.0 * (current - previous) / previous
        context["actualIncreasePercentage"] = round(rise, 4)
        if rise < config.increase_percentage:
            return Finding("clear", context=context)
        return Finding(
            "fired", f"CPA up {rise:.0f}%: {name}",
            f"Cost per attributed conversion of {where} rose from {_money(previous, t['currency'])} to "
            f"{_money(current, t['currency'])} ({rise:.1f}%) over the last {config.days} days (alert at "
            f"{config.increase_percentage:g}%).",
            context, rise >= ESCALATION_FACTOR * config.increase_percentage,
        )  # fmt: skip
    assert isinstance(config, cond.RoasDrop)
    current, previous = t["roas"], t["roas_previous"]
    context = base | window | {"currentRoas": current, "previousRoas": previous, "dropPercentage": config.drop_percentage,
                               "minRoas": config.min_roas}  # fmt: skip
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
        "fired", f"ROAS {current:.2f}: {name}",
        f"ROAS of {where} over the last {config.days} days is {current:.2f}: it " + " and ".join(reasons) + ".",
        context, escalate,
    )  # fmt: skip


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
    context = base | {"date": end.isoformat(), "clicks": value, "baselineDays": config.baseline_days, "seasonal": config.seasonal,
                      "threshold": config.threshold, "direction": config.direction}  # fmt: skip
    if len(history) < 4 or sum(history) == 0:
        return Finding("unknown", context=context)
    score = robust_zscore(value, history)
    finite = abs(score.z) != float("inf")
    context |= {"baselineMedian": score.median, "robustScale": score.scale, "zScore": score.z if finite else None,
                "method": score.method, "baselinePoints": len(history)}  # fmt: skip
    if not score.is_anomaly(config.threshold, config.direction):
        return Finding("clear", context=context)
    kind = "spike" if score.z > 0 else "drop"
    z_text = f"z = {score.z:.1f}" if finite else "a flat baseline"
    return Finding(
        "fired", f"Click {kind} on {end.isoformat()}: {rule['name']}",
        f"{where.capitalize() if where == 'the organization' else where} had {value:,} clicks on {end.isoformat()} against a "
        f"median of {score.median:,.0f} over {len(history)} {'same-weekday ' if config.seasonal else ''}days ({z_text}; "
        f"alert at |z| >= {config.threshold:g}).",
        context, abs(score.z) >= ESCALATION_FACTOR * config.threshold,
    )  # fmt: skip


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
                seen.append({"metric": c.metric, "period": f"{c.days}d", "actual": None, "holds": None,
                             "reason": no_results_message(query)})  # fmt: skip
                return None
        if c.compare == "value":
            actual = t[c.metric]
        else:
            change = t[f"{c.metric}_change"]
            actual = None if change is None else 100.0 * change
        result = None if actual is None else bool(cond.OPERATORS[c.operator](actual, c.value))
        seen.append({"metric": c.metric, "compare": c.compare, "period": f"{c.days}d", "operator": c.operator,
                     "value": c.value, "actual": actual, "holds": result})  # fmt: skip
        return result

    verdict = holds(config.condition)
    context = base | {"conditions": seen}
    if verdict is None:
        return Finding("unknown", context=context)
    if not verdict:
        return Finding("clear", context=context)
    parts = [f"{s['metric']}{' change %' if s['compare'] != 'value' else ''} over {s['period']} = {s['actual']:.6g} "
             f"{s['operator']} {s['value']:g}" for s in seen if s["holds"]]  # fmt: skip
    return Finding("fired", f"Condition met: {rule['name']}", f"For {where}: " + "; ".join(parts) + ".", context)


# --- writing the outcome ----------------------------------------------------------------------------------
def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _notify(
    connection: Connection,
    rule: Mapping[str, Any],
    event_id: str,
    title: str,
    message: str,
    severity: str,
    now: datetime,
) -> int:
    if not rule["notifyInApp"]:
        return 0
    metadata = json.dumps(
        {"alertEventId": event_id, "alertRuleId": rule["id"], "severity": severity, "type": rule["type"]}
    )
    result = connection.execute(
        text(
            'INSERT INTO "InAppNotification" (id, "organizationId", "userId", title, message, priority, status, "actionUrl", '
            'metadata, "createdAt", "updatedAt")\n'
            "SELECT 'ntf_' || replace(gen_random_uuid()::text, '-', ''), m.\"organizationId\", m.\"userId\", :title, :message, "
            ":priority, 'pending', '/workspace/' || o.slug || '/alerts/' || CAST(:event AS text), CAST(:metadata AS jsonb), :now, :now\n"
            'FROM "Membership" m JOIN "Organization" o ON o.id = m."organizationId" WHERE m."organizationId" = :org'
        ),
        {
            "title": title,
            "message": message,
            "priority": _PRIORITY[severity],
            "event": event_id,
            "metadata": metadata,
            "now": now,
            "org": rule["organizationId"],
        },  # fmt: skip
    )
    return result.rowcount


def _apply(connection: Connection, rule: Mapping[str, Any], finding: Finding, now: datetime) -> Evaluation:
    org, rule_id = rule["organizationId"], rule["id"]
    latest = (
        connection.execute(
            text(
                'SELECT id, status::text AS status, severity::text AS severity, context FROM "AlertEvent"\n'
                'WHERE "alertRuleId" = :rule AND "organizationId" = :org ORDER BY "triggeredAt" DESC, "createdAt" DESC LIMIT 1'
            ),
            {"rule": rule_id, "org": org},
        )
        .mappings()
        .first()
    )
    is_open = latest is not None and latest["status"] in OPEN_STATUSES
    quiet = latest is not None and latest["status"] == "DISMISSED" and "clearedAt" not in (latest["context"] or {})
    latest = cast(Any, latest)  # indexed below only where is_open or quiet: not None there
    done = lambda action, event=None: Evaluation(rule_id, org, action, event)  # noqa: E731
    if finding.state == "unknown":
        return done("unknown", latest["id"] if is_open else None)
    if finding.state == "clear":
        if is_open:
            extra = {"autoResolved": True, "resolvedContext": finding.context}
            _update_event(connection, latest["id"], org, "RESOLVED", now, None, extra)
            _notify(
                connection,
                rule,
                latest["id"],
                f"Resolved: {rule['name']}",
                "The alert condition no longer holds.",
                "INFO",
                now,
            )
            return done("resolved", latest["id"])
        if quiet:
            _merge_context(connection, latest["id"], {"clearedAt": now.isoformat()})
            return done("cleared", latest["id"])
        return done("ok")
    severity = "CRITICAL" if finding.escalate else rule["severity"]
    if is_open:
        if _RANK[severity] > _RANK[latest["severity"]]:
            connection.execute(
                text('UPDATE "AlertEvent" SET severity = CAST(:sev AS "AlertSeverity"), context = context || CAST(:extra AS jsonb), '
                     '"updatedAt" = :now WHERE id = :id'),
                {"sev": severity, "extra": json.dumps({"escalatedAt": now.isoformat(), "escalatedContext": finding.context}),
                 "now": now, "id": latest["id"]},
            )  # fmt: skip
            _notify(
                connection,
                rule,
                latest["id"],
                f"Escalated to {severity}: {finding.title}",
                finding.message,
                severity,
                now,
            )
            return done("escalated", latest["id"])
        return done("kept", latest["id"])
    if quiet:
        return done("suppressed", latest["id"])
    event_id = _new_id("alev")
    connection.execute(
        text(
            'INSERT INTO "AlertEvent" (id, "organizationId", "alertRuleId", status, severity, title, message, context, '
            '"triggeredAt", "createdAt", "updatedAt")\n'
            "VALUES (:id, :org, :rule, 'TRIGGERED', CAST(:sev AS \"AlertSeverity\"), :title, :message, CAST(:context AS jsonb), "
            ":now, :now, :now)"
        ),
        {
            "id": event_id,
            "org": org,
            "rule": rule_id,
            "sev": severity,
            "title": finding.title,
            "message": finding.message,
            "context": json.dumps(finding.context | {"ruleType": rule["type"], "escalated": finding.escalate}),
            "now": now,
        },  # fmt: skip
    )
    _notify(connection, rule, event_id, finding.title, finding.message, severity, now)
    return done("opened", event_id)


def _merge_context(connection: Connection, event_id: str, extra: dict[str, Any]) -> None:
    connection.execute(
        text('UPDATE "AlertEvent" SET context = context || CAST(:extra AS jsonb) WHERE id = :id'),
        {"extra": json.dumps(extra), "id": event_id},
    )


def evaluate_rule(connection: Connection, rule: Mapping[Any, Any], *, now: datetime) -> Evaluation:
    """Evaluate one rule row and write the outcome (event, escalation, resolution, notifications).

    The caller holds the rule's row lock (``FOR UPDATE``) in the connection's transaction and updates
    ``lastEvaluatedAt``; :func:`evaluate_due` and :func:`evaluate_now` do both. An invalid config or a
    failing query is rolled back to a savepoint and reported as ``action="error"``.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in the transaction that holds the rule's row lock.
    rule
        The ``AlertRule`` row (its columns by name: ``id``, ``organizationId``, ``name``, ``type``,
        ``severity``, ``config``, ``notifyInApp``, ...).
    now
        The evaluation instant (timezone-aware): the windows are the complete UTC days before it.

    Returns
    -------
    Evaluation
        Never raises for a bad rule: any exception becomes ``action="error"`` (logged as a warning).
    """
    try:
        with connection.begin_nested():
            config = cond.parse_config(rule["type"], rule["config"])
            return _apply(connection, rule, _check(connection, rule, config, now), now)
    except Exception as exc:  # one broken rule must not stop the others; reported, logged, retried next interval
        logger.warning("alert rule %s (%s) failed to evaluate: %s", rule["id"], rule["organizationId"], exc)
        return Evaluation(rule["id"], rule["organizationId"], "error", error=f"{type(exc).__name__}: {exc}")


_RULE_COLUMNS = (
    'id, "organizationId", name, type::text AS type, severity::text AS severity, status::text AS status, config, '
    '"evaluationInterval", "lastEvaluatedAt", "notifyEmail", "notifyInApp", "notifySlack", "createdAt", "updatedAt"'
)
_CLAIM = text(
    f'SELECT {_RULE_COLUMNS} FROM "AlertRule"\n'
    'WHERE status = \'ACTIVE\' AND ("lastEvaluatedAt" IS NULL OR "lastEvaluatedAt" + make_interval(secs => "evaluationInterval") <= :now)\n'
    '  AND (CAST(:org AS text) IS NULL OR "organizationId" = :org)\n'
    'ORDER BY "lastEvaluatedAt" NULLS FIRST, id LIMIT 1 FOR UPDATE SKIP LOCKED'
)
_MARK = text('UPDATE "AlertRule" SET "lastEvaluatedAt" = :now WHERE id = :id')


def _engine(database: str | URL | Engine) -> tuple[Engine, bool]:
    if isinstance(database, Engine):
        return database, False
    from ..io.db import normalise_url

    return create_engine(normalise_url(database)), True


def evaluate_due(
    database: str | URL | Engine,
    *,
    organization_id: str | None = None,
    now: datetime | None = None,
    limit: int | None = None,
) -> list[Evaluation]:
    """Evaluate every due rule (``ACTIVE``, ``lastEvaluatedAt + evaluationInterval <= now``), one transaction each.

    Safe to run in several workers at once: each claims one rule with ``FOR UPDATE SKIP LOCKED``,
    evaluates it and sets ``lastEvaluatedAt = now`` before committing, so a rule is evaluated once per
    due time and never gets duplicate events.

    Parameters
    ----------
    database
        Database URL or a SQLAlchemy engine (not disposed when given).
    organization_id
        Only this organization's rules.
    now
        The evaluation instant (timezone-aware; default the current time).
    limit
        Evaluate at most this many rules.

    Returns
    -------
    list of Evaluation
        One per rule evaluated, in the order claimed (least recently evaluated first).

    Raises
    ------
    ConfigError
        ``database`` is a URL that is not a PostgreSQL one.
    ValueError
        ``now`` is naive.
    """
    now = _aware(now)
    engine, owned = _engine(database)
    results: list[Evaluation] = []
    try:
        while limit is None or len(results) < limit:
            with engine.begin() as connection:
                rule = connection.execute(_CLAIM, {"now": now, "org": organization_id}).mappings().first()
                if rule is None:
                    break
                results.append(evaluate_rule(connection, rule, now=now))
                connection.execute(_MARK, {"now": now, "id": rule["id"]})
    finally:
        if owned:
            engine.dispose()
    return results


def evaluate_now(
    connection: Connection, rule_id: str, *, organization_id: str, now: datetime | None = None
) -> Evaluation:
    """Evaluate one rule of the organization now, due or not (waits for a worker holding it).

    The caller commits (``with engine.begin() as connection``). Raises :class:`NotFoundError` for a rule of
    another organization or none.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    rule_id
        ``AlertRule.id``.
    organization_id
        The caller's organization.
    now
        The instant (timezone-aware; default None: the current time).

    Returns
    -------
    Evaluation

    Raises
    ------
    NotFoundError
        No such rule in the organization.
    ValueError
        ``now`` is naive.
    """
    now = _aware(now)
    rule = (
        connection.execute(
            text(f'SELECT {_RULE_COLUMNS} FROM "AlertRule" WHERE id = :id AND "organizationId" = :org FOR UPDATE'),
            {"id": rule_id, "org": organization_id},
        )
        .mappings()
        .first()
    )
    if rule is None:
        raise NotFoundError(f"no alert rule {rule_id!r} in this organization")
    result = evaluate_rule(connection, rule, now=now)
    connection.execute(_MARK, {"now": now, "id": rule_id})
    return result


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now


# --- rules ----------------------------------------------------------------------------------------------
def _jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in row.items()}


def create_rule(
    connection: Connection,
    *,
    organization_id: str,
    name: str,
    type: str,  # noqa: A002 - the seed's field name
    config: Any,
    severity: str = "WARNING",
    status: str = "ACTIVE",
    evaluation_interval: int = 3600,
    notify_email: bool = True,
    notify_in_app: bool = True,
    notify_slack: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Validate and insert an ``AlertRule``; the new row as a dict.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    organization_id
        The rule's organization.
    name
        A non-empty name of at most 200 characters (stored trimmed).
    type
        One of the ``AlertType`` values (``SPEND_THRESHOLD``, ``CONVERSION_DROP``, ...).
    config
        The rule's config JSON (:func:`optiq_engine.service.conditions.parse_config` checks it).
    severity
        ``INFO``, ``WARNING`` (default) or ``CRITICAL``.
    status
        ``ACTIVE`` (default) or ``PAUSED``.
    evaluation_interval
        Seconds between evaluations, 60 to 30 days (default 3600).
    notify_email, notify_in_app, notify_slack
        Notification channels (defaults True, True, False); only in-app notifications are sent by the engine.
    now
        The instant (timezone-aware; default None: the current time).

    Returns
    -------
    dict
        The new row (id ``alr_...``; timestamps as ISO 8601 strings).

    Raises
    ------
    RuleConfigError
        With one message per bad field: ``name``, ``type``, ``severity``, ``status``,
        ``evaluationInterval``, ``config.<field>`` (including scope ids not found in the organization).
    ValueError
        ``now`` is naive.
    """
    errors: dict[str, str] = {}
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = "required: a non-empty name of at most 200 characters"
    if type not in ALERT_TYPES:
        errors["type"] = f"must be one of {', '.join(ALERT_TYPES)}, got {type!r}"
    if severity not in ALERT_SEVERITIES:
        errors["severity"] = f"must be one of {', '.join(ALERT_SEVERITIES)}, got {severity!r}"
    if status not in ("ACTIVE", "PAUSED"):
        errors["status"] = f"a new rule is ACTIVE or PAUSED, got {status!r}"
    if (
        isinstance(evaluation_interval, bool)
        or not isinstance(evaluation_interval, int)
        or not 60 <= evaluation_interval <= 30 * 86400
    ):
        errors["evaluationInterval"] = f"seconds between evaluations, 60 to {30 * 86400}, got {evaluation_interval!r}"
    if type in ALERT_TYPES:
        try:
            cond.parse_config(type, config)
        except RuleConfigError as exc:
            errors |= exc.errors
    for key, table in (("adAccountId", "AdAccount"), ("campaignId", "Campaign"), ("adId", "Ad")):
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, str) and value.strip() and f"config.{key}" not in errors:
            found = connection.execute(
                text(f'SELECT 1 FROM "{table}" WHERE id = :id AND "organizationId" = :org'),
                {"id": value, "org": organization_id},
            ).first()
            if not found:
                errors[f"config.{key}"] = f"no {table} {value!r} in this organization"
    if errors:
        raise RuleConfigError(errors, rule_type=type if type in ALERT_TYPES else None)
    now = _aware(now)
    rule_id = _new_id("alr")
    row = (
        connection.execute(
            text(
                'INSERT INTO "AlertRule" (id, "organizationId", name, type, severity, status, config, "evaluationInterval", '
                '"notifyEmail", "notifyInApp", "notifySlack", "createdAt", "updatedAt")\n'
                'VALUES (:id, :org, :name, CAST(:type AS "AlertType"), CAST(:severity AS "AlertSeverity"), '
                'CAST(:status AS "AlertRuleStatus"), CAST(:config AS jsonb), :interval, :email, :in_app, :slack, :now, :now)\n'
                f"RETURNING {_RULE_COLUMNS}"
            ),
            {
                "id": rule_id,
                "org": organization_id,
                "name": name.strip(),
                "type": type,
                "severity": severity,
                "status": status,
                "config": json.dumps(config),
                "interval": evaluation_interval,
                "email": notify_email,
                "in_app": notify_in_app,
                "slack": notify_slack,
                "now": now,
            },  # fmt: skip
        )
        .mappings()
        .one()
    )
    return _jsonable(row)


def read_rules(connection: Connection, *, organization_id: str, status: str | None = None) -> list[dict[str, Any]]:
    """The organization's alert rules (optionally of one status), newest first.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    organization_id
        The caller's organization.
    status
        Only rules of this status (``ACTIVE``, ``PAUSED``, ...); default None: all. An unknown status gives
        no rule.

    Returns
    -------
    list of dict
        One row per rule (timestamps as ISO 8601 strings).
    """
    rows = connection.execute(
        text(f'SELECT {_RULE_COLUMNS} FROM "AlertRule" WHERE "organizationId" = :org '
             "AND (CAST(:status AS text) IS NULL OR status::text = :status) ORDER BY \"createdAt\" DESC, id"),
        {"org": organization_id, "status": status},
    ).mappings().all()  # fmt: skip
    return [_jsonable(r) for r in rows]


def read_rule(connection: Connection, rule_id: str, *, organization_id: str) -> dict[str, Any]:
    """One rule of the organization; :class:`NotFoundError` otherwise.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    rule_id
        ``AlertRule.id``.
    organization_id
        The caller's organization.

    Returns
    -------
    dict
        The row (timestamps as ISO 8601 strings).

    Raises
    ------
    NotFoundError
        No such rule in the organization.
    """
    row = (
        connection.execute(
            text(f'SELECT {_RULE_COLUMNS} FROM "AlertRule" WHERE id = :id AND "organizationId" = :org'),
            {"id": rule_id, "org": organization_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no alert rule {rule_id!r} in this organization")
    return _jsonable(row)


# --- events and their lifecycle ------------------------------------------------------------------------------
_EVENT_COLUMNS = (
    'id, "organizationId", "alertRuleId", status::text AS status, severity::text AS severity, title, message, context, '
    '"triggeredAt", "acknowledgedAt", "acknowledgedBy", "resolvedAt", "resolvedBy", "dismissedAt", "dismissedBy", '
    '"createdAt", "updatedAt"'
)


def read_events(
    connection: Connection,
    *,
    organization_id: str,
    status: str | None = None,
    severity: str | None = None,
    rule_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The organization's alert events, newest first (``(organizationId, status, triggeredAt)`` index).

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    organization_id
        The caller's organization.
    status, severity
        Only events of this status / severity; default None: all.
    rule_id
        Only the events of this rule; default None: all.
    limit
        At most this many events, clamped to 1..1000 (default 100).

    Returns
    -------
    list of dict
        One row per event (timestamps as ISO 8601 strings).

    Raises
    ------
    RuleConfigError
        An unknown ``status`` or ``severity``.
    """
    if status is not None and status not in ALERT_EVENT_STATUSES:
        raise RuleConfigError({"status": f"must be one of {', '.join(ALERT_EVENT_STATUSES)}, got {status!r}"})
    if severity is not None and severity not in ALERT_SEVERITIES:
        raise RuleConfigError({"severity": f"must be one of {', '.join(ALERT_SEVERITIES)}, got {severity!r}"})
    rows = (
        connection.execute(
            text(
                f'SELECT {_EVENT_COLUMNS} FROM "AlertEvent" WHERE "organizationId" = :org\n'
                '  AND (CAST(:status AS text) IS NULL OR status = CAST(:status AS "AlertEventStatus"))\n'
                '  AND (CAST(:severity AS text) IS NULL OR severity = CAST(:severity AS "AlertSeverity"))\n'
                '  AND (CAST(:rule AS text) IS NULL OR "alertRuleId" = :rule)\n'
                'ORDER BY "triggeredAt" DESC, id LIMIT :limit'
            ),
            {
                "org": organization_id,
                "status": status,
                "severity": severity,
                "rule": rule_id,
                "limit": max(1, min(int(limit), 1000)),
            },
        )
        .mappings()
        .all()
    )
    return [_jsonable(r) for r in rows]


def read_event(connection: Connection, event_id: str, *, organization_id: str) -> dict[str, Any]:
    """One alert event of the organization; :class:`NotFoundError` otherwise.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    event_id
        ``AlertEvent.id``.
    organization_id
        The caller's organization.

    Returns
    -------
    dict
        The row (timestamps as ISO 8601 strings).

    Raises
    ------
    NotFoundError
        No such event in the organization.
    """
    row = (
        connection.execute(
            text(f'SELECT {_EVENT_COLUMNS} FROM "AlertEvent" WHERE id = :id AND "organizationId" = :org'),
            {"id": event_id, "org": organization_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no alert event {event_id!r} in this organization")
    return _jsonable(row)


_TRANSITIONS = {
    "ACKNOWLEDGED": (("TRIGGERED",), "acknowledgedAt", "acknowledgedBy"),
    "RESOLVED": (OPEN_STATUSES, "resolvedAt", "resolvedBy"),
    "DISMISSED": (OPEN_STATUSES, "dismissedAt", "dismissedBy"),
}


def _update_event(connection: Connection, event_id: str, org: str, target: str, now: datetime, by: str | None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any] | None:  # fmt: skip
    allowed, at_col, by_col = _TRANSITIONS[target]
    row = (
        connection.execute(
            text(
                f'UPDATE "AlertEvent" SET status = CAST(:target AS "AlertEventStatus"), "{at_col}" = :now, "{by_col}" = :by, '
                '"updatedAt" = :now, context = context || CAST(:extra AS jsonb)\n'
                'WHERE id = :id AND "organizationId" = :org AND status::text = ANY(:allowed)\n'
                f"RETURNING {_EVENT_COLUMNS}"
            ),
            {
                "target": target,
                "now": now,
                "by": by,
                "id": event_id,
                "org": org,
                "allowed": list(allowed),
                "extra": json.dumps(extra or {}),
            },
        )
        .mappings()
        .first()
    )
    return None if row is None else _jsonable(row)


def _transition(
    connection: Connection, event_id: str, target: str, *, organization_id: str, by: str, now: datetime | None
) -> dict[str, Any]:
    now = _aware(now)
    member = connection.execute(
        text('SELECT role::text FROM "Membership" WHERE "userId" = :by AND "organizationId" = :org'),
        {"by": by, "org": organization_id},
    ).scalar()
    if member is None:
        raise PermissionDeniedError(f"user {by!r} is not a member of this organization")
    if member == "VIEWER":
        raise PermissionDeniedError(f"user {by!r} is a VIEWER of this organization (read-only)")
    row = _update_event(connection, event_id, organization_id, target, now, by)
    if row is not None:
        return row
    current = read_event(connection, event_id, organization_id=organization_id)  # NotFoundError when absent
    verb = {"ACKNOWLEDGED": "acknowledge", "RESOLVED": "resolve", "DISMISSED": "dismiss"}[target]
    allowed = " or ".join(_TRANSITIONS[target][0])
    raise TransitionError(
        f"cannot {verb} alert event {event_id!r}: it is {current['status']}, and only {allowed} events can be"
    )


def acknowledge(
    connection: Connection, event_id: str, *, organization_id: str, by: str, now: datetime | None = None
) -> dict[str, Any]:
    """``TRIGGERED`` -> ``ACKNOWLEDGED``, recording who (a non-VIEWER member's user id) and when.

    Raises :class:`TransitionError` from any other status, :class:`NotFoundError` for an event outside the
    organization, :class:`PermissionDeniedError` when ``by`` is not a member or is a VIEWER.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    event_id
        ``AlertEvent.id``.
    organization_id
        The caller's organization.
    by
        The acting user's id: a member of the organization other than a VIEWER.
    now
        The instant (timezone-aware; default None: the current time).

    Returns
    -------
    dict
        The updated event row (timestamps as ISO 8601 strings).

    Raises
    ------
    TransitionError
        The event's status does not allow the change.
    NotFoundError
        No such event in the organization.
    PermissionDeniedError
        ``by`` is not a member of the organization, or is a VIEWER.
    ValueError
        ``now`` is naive.
    """
    return _transition(connection, event_id, "ACKNOWLEDGED", organization_id=organization_id, by=by, now=now)


def resolve(
    connection: Connection, event_id: str, *, organization_id: str, by: str, now: datetime | None = None
) -> dict[str, Any]:
    """``TRIGGERED`` or ``ACKNOWLEDGED`` -> ``RESOLVED`` (who and when); errors as :func:`acknowledge`.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    event_id
        ``AlertEvent.id``.
    organization_id
        The caller's organization.
    by
        The acting user's id: a member of the organization other than a VIEWER.
    now
        The instant (timezone-aware; default None: the current time).

    Returns
    -------
    dict
        The updated event row (timestamps as ISO 8601 strings).

    Raises
    ------
    TransitionError
        The event's status does not allow the change.
    NotFoundError
        No such event in the organization.
    PermissionDeniedError
        ``by`` is not a member of the organization, or is a VIEWER.
    ValueError
        ``now`` is naive.
    """
    return _transition(connection, event_id, "RESOLVED", organization_id=organization_id, by=by, now=now)


def dismiss(
    connection: Connection, event_id: str, *, organization_id: str, by: str, now: datetime | None = None
) -> dict[str, Any]:
    """``TRIGGERED`` or ``ACKNOWLEDGED`` -> ``DISMISSED`` (who and when); errors as :func:`acknowledge`.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits (acting for the organization, under
        row-level security in the service).
    event_id
        ``AlertEvent.id``.
    organization_id
        The caller's organization.
    by
        The acting user's id: a member of the organization other than a VIEWER.
    now
        The instant (timezone-aware; default None: the current time).

    Returns
    -------
    dict
        The updated event row (timestamps as ISO 8601 strings).

    Raises
    ------
    TransitionError
        The event's status does not allow the change.
    NotFoundError
        No such event in the organization.
    PermissionDeniedError
        ``by`` is not a member of the organization, or is a VIEWER.
    ValueError
        ``now`` is naive.
    """
    return _transition(connection, event_id, "DISMISSED", organization_id=organization_id, by=by, now=now)
