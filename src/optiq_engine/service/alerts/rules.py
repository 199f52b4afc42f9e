"""Alert rules: creating one (its config validated by :mod:`optiq_engine.service.conditions`) and reading them."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ...io.schema import ALERT_SEVERITIES, ALERT_TYPES
from .. import conditions as cond
from ..errors import RuleConfigError
from .events import _aware, _jsonable, _new_id, _one_row

__all__ = ["create_rule", "read_rules", "read_rule"]

logger = logging.getLogger(__name__)

_RULE_COLUMNS = (
    'id, "organizationId", name, type::text AS type, severity::text AS severity, status::text AS status, config, '
    '"evaluationInterval", "lastEvaluatedAt", "notifyEmail", "notifyInApp", "notifySlack", "createdAt", "updatedAt"'
)


# --- rules ----------------------------------------------------------------------------------------------
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
    errors = _rule_errors(connection, organization_id, name, type, severity, status, config, evaluation_interval)
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
            },
        )
        .mappings()
        .one()
    )
    return _jsonable(row)


def _rule_errors(
    connection: Connection,
    organization_id: str,
    name: Any,
    type: Any,
    severity: Any,
    status: Any,
    config: Any,
    evaluation_interval: Any,
) -> dict[str, str]:
    """What is wrong with a new rule, by field (``config.<key>`` for its config's fields; empty: nothing)."""
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
    return errors


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
    rows = (
        connection.execute(
            text(
                f'SELECT {_RULE_COLUMNS} FROM "AlertRule" WHERE "organizationId" = :org '
                'AND (CAST(:status AS text) IS NULL OR status::text = :status) ORDER BY "createdAt" DESC, id'
            ),
            {"org": organization_id, "status": status},
        )
        .mappings()
        .all()
    )
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
    return _one_row(connection, "AlertRule", _RULE_COLUMNS, rule_id, organization_id, what="alert rule")
