"""``/v1/alert-rules``: the organization's alert rules (list, create, read) and the evaluation of one rule,
over :mod:`optiq_engine.service.alerts`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from .. import alerts
from ..dependencies import Caller, Conn, Writer
from ..schemas import ERROR_RESPONSES, EvaluationOut, Id, RuleIn

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/alert-rules", tags=["alert rules"], responses=ERROR_RESPONSES)
def list_rules(
    caller: Caller, conn: Conn, status: Literal["ACTIVE", "PAUSED", "ARCHIVED"] | None = None
) -> list[dict[str, Any]]:
    """Alert rules, newest first."""
    return alerts.read_rules(conn, organization_id=caller.organization_id, status=status)


@router.post("/v1/alert-rules", tags=["alert rules"], status_code=201, responses=ERROR_RESPONSES)
def create_rule(caller: Writer, conn: Conn, rule: RuleIn) -> dict[str, Any]:
    """Create an alert rule; its config is validated per type (422 names every bad field)."""
    return alerts.create_rule(
        conn,
        organization_id=caller.organization_id,
        name=rule.name,
        type=rule.type,
        config=rule.config,
        severity=rule.severity,
        status=rule.status,
        evaluation_interval=rule.evaluationInterval,
        notify_email=rule.notifyEmail,
        notify_in_app=rule.notifyInApp,
        notify_slack=rule.notifySlack,
    )


@router.get("/v1/alert-rules/{rule_id}", tags=["alert rules"], responses=ERROR_RESPONSES)
def get_rule(caller: Caller, conn: Conn, rule_id: Id) -> dict[str, Any]:
    """One alert rule."""
    return alerts.read_rule(conn, rule_id, organization_id=caller.organization_id)


@router.post("/v1/alert-rules/{rule_id}/evaluate", tags=["alert rules"], responses=ERROR_RESPONSES)
def evaluate_rule(caller: Writer, conn: Conn, rule_id: Id) -> EvaluationOut:
    """Evaluate one rule now, due or not."""
    e = alerts.evaluate_now(conn, rule_id, organization_id=caller.organization_id)
    return EvaluationOut(rule_id=e.rule_id, action=e.action, event_id=e.event_id, error=e.error)
