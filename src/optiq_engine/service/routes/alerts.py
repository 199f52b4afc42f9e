"""``/v1/alerts``: the organization's alert events (list, read, acknowledge, resolve, dismiss) and the
evaluation of its due rules, over :mod:`optiq_engine.service.alerts`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from .. import alerts, tenancy
from ..dependencies import Caller, Conn, Writer
from ..schemas import ERROR_RESPONSES, EvaluationOut, EventStatus, Id, IdFilter, Severity

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/alerts", tags=["alerts"], responses=ERROR_RESPONSES)
def list_alerts(
    caller: Caller,
    conn: Conn,
    status: EventStatus | None = None,
    severity: Severity | None = None,
    rule_id: IdFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Alert events, newest first."""
    return alerts.read_events(
        conn, organization_id=caller.organization_id, status=status, severity=severity, rule_id=rule_id, limit=limit
    )


@router.get("/v1/alerts/{event_id}", tags=["alerts"], responses=ERROR_RESPONSES)
def get_alert(caller: Caller, conn: Conn, event_id: Id) -> dict[str, Any]:
    """One alert event."""
    return alerts.read_event(conn, event_id, organization_id=caller.organization_id)


def _lifecycle(op: Callable[..., dict[str, Any]], summary: str) -> Callable[..., dict[str, Any]]:
    """The route applying ``op`` (:func:`~optiq_engine.service.alerts.acknowledge` and the like) to an event,
    with ``summary`` as its docstring (the operation's description in OpenAPI)."""

    def route(caller: Writer, conn: Conn, event_id: Id) -> dict[str, Any]:
        return op(conn, event_id, organization_id=caller.organization_id, by=caller.user_id)

    route.__doc__ = summary
    return route


def _add_lifecycle_routes() -> None:
    """``POST /v1/alerts/{event_id}/acknowledge``, ``.../resolve`` and ``.../dismiss``."""
    for verb, op in (("acknowledge", alerts.acknowledge), ("resolve", alerts.resolve), ("dismiss", alerts.dismiss)):
        router.post(
            f"/v1/alerts/{{event_id}}/{verb}",
            tags=["alerts"],
            name=verb,
            responses={**ERROR_RESPONSES, 409: {"description": "Not allowed from the event's current status"}},
        )(_lifecycle(op, f"{verb.capitalize()} an alert event (the key's user is recorded as who)."))


_add_lifecycle_routes()


@router.post("/v1/alerts/evaluate", tags=["alerts"], responses=ERROR_RESPONSES)
def evaluate(
    caller: Writer,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="Evaluate at most this many rules")] = 100,
) -> list[EvaluationOut]:
    """Evaluate the organization's due rules now (at most ``limit``; the others stay due for the next call)."""
    scoped = tenancy.for_organization(request.app.state.engine, caller.organization_id)
    done = alerts.evaluate_due(scoped, organization_id=caller.organization_id, limit=limit)
    return [EvaluationOut(rule_id=e.rule_id, action=e.action, event_id=e.event_id, error=e.error) for e in done]
