"""Evaluating rules: one (:func:`evaluate_rule`), the due ones across workers (:func:`evaluate_due`), or some
now (:func:`evaluate_now`); the outcome written (events opened, escalated, resolved; notifications)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import URL, Connection, Engine, create_engine, text

from ...io.schema import ALERT_SEVERITIES
from .. import conditions as cond
from ..errors import NotFoundError
from .checks import Finding, _check
from .events import OPEN_STATUSES, _aware, _new_id, _update_event
from .rules import _RULE_COLUMNS

__all__ = ["Evaluation", "evaluate_rule", "evaluate_due", "evaluate_now"]

logger = logging.getLogger(__name__)

_PRIORITY = {"INFO": "normal", "WARNING": "high", "CRITICAL": "urgent"}
_RANK = {s: i for i, s in enumerate(ALERT_SEVERITIES)}


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


# --- writing the outcome ----------------------------------------------------------------------------------
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
        },
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
                text(
                    'UPDATE "AlertEvent" SET severity = CAST(:sev AS "AlertSeverity"), context = context || CAST(:extra AS jsonb), '
                    '"updatedAt" = :now WHERE id = :id'
                ),
                {
                    "sev": severity,
                    "extra": json.dumps({"escalatedAt": now.isoformat(), "escalatedContext": finding.context}),
                    "now": now,
                    "id": latest["id"],
                },
            )
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
        },
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
    from ...io.db import normalise_url

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
