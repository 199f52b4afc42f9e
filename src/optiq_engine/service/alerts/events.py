"""Alert events and their lifecycle: reading them, and acknowledge / resolve / dismiss (each a transition of
an open event, recorded with who and when)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, text

from ...io.schema import ALERT_EVENT_STATUSES, ALERT_SEVERITIES
from ..errors import NotFoundError, PermissionDeniedError, RuleConfigError, TransitionError

__all__ = ["OPEN_STATUSES", "read_events", "read_event", "acknowledge", "resolve", "dismiss"]

logger = logging.getLogger(__name__)

#: Events a rule may have one of at a time (a firing condition opens no other while one is).
OPEN_STATUSES = ("TRIGGERED", "ACKNOWLEDGED")


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now


def _one_row(
    connection: Connection, table: str, columns: str, row_id: str, organization_id: str, *, what: str
) -> dict[str, Any]:
    """The row ``row_id`` of ``table`` (a constant name) in the organization, JSON-ready; else a
    :class:`NotFoundError` that names ``what`` (a row of another organization is not found either)."""
    query = text(f'SELECT {columns} FROM "{table}" WHERE id = :id AND "organizationId" = :org')
    row = connection.execute(query, {"id": row_id, "org": organization_id}).mappings().first()
    if row is None:
        raise NotFoundError(f"no {what} {row_id!r} in this organization")
    return _jsonable(row)


def _jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in row.items()}


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
    return _one_row(connection, "AlertEvent", _EVENT_COLUMNS, event_id, organization_id, what="alert event")


_TRANSITIONS = {
    "ACKNOWLEDGED": (("TRIGGERED",), "acknowledgedAt", "acknowledgedBy"),
    "RESOLVED": (OPEN_STATUSES, "resolvedAt", "resolvedBy"),
    "DISMISSED": (OPEN_STATUSES, "dismissedAt", "dismissedBy"),
}


def _update_event(
    connection: Connection,
    event_id: str,
    org: str,
    target: str,
    now: datetime,
    by: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
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
