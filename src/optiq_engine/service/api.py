"""The HTTP API (FastAPI): metrics, attribution credit, alert events and rules of the caller's organization.

Every request but ``GET /v1/health`` carries an API key (``Authorization: Bearer optiq_...``, see
:mod:`optiq_engine.service.keys`); everything it reads or changes is filtered by the key's organization,
so another organization's rule or event is a 404, exactly like one that does not exist. Below the queries'
own filters, each transaction acts as a role under row-level security scoped to the key's organization
(:mod:`optiq_engine.service.tenancy`). VIEWER keys are read-only (403 on writes). Validation errors are
422 naming the field, NUL bytes and out-of-range numbers included; a saturated worker answers 503 with
``Retry-After`` (:mod:`optiq_engine.service.limits`); unexpected errors are a 500 with a generic body
(details go to the log, never to the client), and the connection stays open.

Run it with ``optiq serve`` (uvicorn) or ``uvicorn --factory`` on :func:`create_app`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy import exc as sa_exc

from ..errors import ConfigError, OptiqError
from ..io.schema import ALERT_EVENT_STATUSES, ALERT_SEVERITIES, ALERT_TYPES, ATTRIBUTION_MODELS, PLATFORM_CODES
from . import alerts, keys, tenancy
from .errors import CurrencyError, NotFoundError, PermissionDeniedError, RuleConfigError, TransitionError
from .limits import AdmissionControl, CatchAll, Limits, RejectNul, busy_response
from .metrics import GRAINS, CurrencyConversion, MetricsQuery, read_credit, read_metrics

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def _upper(value: object) -> object:
    """Model names are case-insensitive, as in Python's ``get_model``: ``linear`` is ``LINEAR``."""
    return value.upper() if isinstance(value, str) else value


Model = Annotated[Literal[ATTRIBUTION_MODELS], BeforeValidator(_upper)]  # type: ignore[valid-type]
GrainName = Literal[GRAINS]  # type: ignore[valid-type]
Platform = Literal[PLATFORM_CODES]  # type: ignore[valid-type]
EventStatus = Literal[ALERT_EVENT_STATUSES]  # type: ignore[valid-type]
Severity = Literal[ALERT_SEVERITIES]  # type: ignore[valid-type]
RuleType = Literal[ALERT_TYPES]  # type: ignore[valid-type]
# A rate is at most 999999.999999999999 units of the target per unit (the largest real ones are in the tens of
# thousands): converted amounts then stay within Postgres' bigint micros.
Rate = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}:[0-9]{1,6}(\.[0-9]{1,12})?$")]
Id = Annotated[str, Path(min_length=1, max_length=200)]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
ConversionName = Annotated[
    str | None, Query(min_length=1, max_length=200, description="Only the conversions of this type (their name)")
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key"},
    403: {"description": "The key's role does not allow this"},
    404: {"description": "Not found in the key's organization"},
    422: {"description": "Invalid request (the field is named)"},
}
_QUERY_FIELDS = {"start", "end", "model", "grain", "platform", "ad_account_id", "campaign_id", "ad_id", "currency", "rate"}


_bearer = HTTPBearer(auto_error=False, description="An Optiq API key: `optiq_<id>_<secret>`")


def _connection(request: Request) -> Iterator[Connection]:
    """One transaction per request (committed when the route returns, rolled back when it raises), acting as
    the service role and scoped to no organization until the key is authenticated."""
    with request.app.state.engine.begin() as conn:
        yield conn


Conn = Annotated[Connection, Depends(_connection)]


def _principal(conn: Conn, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> keys.Principal:
    found = None
    if credentials:
        key_id = credentials.credentials.split("_")[1] if credentials.credentials.count("_") >= 2 else ""
        tenancy.set_organization(conn, None, api_key_id=key_id[:200])  # row-level security: only this key is visible
        found = keys.authenticate(conn, credentials.credentials)
    if found is None:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    tenancy.set_organization(conn, found.organization_id)  # the rest of the transaction sees this organization only
    return found


Caller = Annotated[keys.Principal, Depends(_principal)]


def _writer(caller: Caller) -> keys.Principal:
    if not caller.can_write:
        raise HTTPException(403, f"the key's role {caller.role} is read-only")
    return caller


Writer = Annotated[keys.Principal, Depends(_writer)]


class Rows(BaseModel):
    """A report: its parameters and one object per row."""

    grain: str
    start: date
    end: date
    rows: list[dict[str, Any]]


def _rows_response(grain: str, start: date, end: date, frame: pl.DataFrame) -> Response:
    """:class:`Rows` as JSON, the rows serialized by Polars (the report's columns are strings, dates, int64
    micros and finite floats): no per-cell Python validation of thousands of rows."""
    head = json.dumps({"grain": grain, "start": start.isoformat(), "end": end.isoformat()})
    return Response(content=f'{head[:-1]}, "rows": {frame.write_json()}}}', media_type="application/json")


#: JSON numbers of a rule's config are integers or finite floats within +-(2**53 - 1): what the platform's
#: JavaScript reads exactly, and far beyond any real threshold (9e15 micros is 9 billion units of a currency).
MAX_CONFIG_NUMBER = 2**53 - 1
_MAX_CONFIG_DEPTH = 32


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{where} must not contain a NUL byte (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} must be valid Unicode (no lone surrogate \\ud800-\\udfff)") from None


def _check_config(value: Any, where: str = "config", depth: int = 0) -> None:
    """Raise ValueError naming the first string (key or value) or number of a config that Postgres' jsonb or
    the evaluation cannot hold: NUL bytes, lone surrogates, numbers beyond +-(2**53 - 1), NaN and infinities."""
    if depth > _MAX_CONFIG_DEPTH:
        raise ValueError(f"{where} is nested more than {_MAX_CONFIG_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value}")
        if abs(value) > MAX_CONFIG_NUMBER:
            raise ValueError(f"{where} is out of range: {value} (numbers must be within +-{MAX_CONFIG_NUMBER}, i.e. 2**53 - 1)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{where} key {key!r}")
            _check_config(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_config(item, f"{where}[{i}]", depth + 1)


def _finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its text (``NaN``, ``inf``) and lone surrogates in strings
    by ``?``: strict JSON in UTF-8 cannot hold them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_finite_json(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


class RuleIn(BaseModel):
    """A new alert rule (the seed's ``AlertRule`` fields); text without NUL bytes, config numbers bounded."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    type: RuleType
    severity: Severity = "WARNING"
    status: Literal["ACTIVE", "PAUSED"] = "ACTIVE"
    config: dict[str, Any] = Field(default_factory=dict)
    evaluationInterval: int = Field(3600, ge=60, le=30 * 86400)  # noqa: N815 - the seed's field name
    notifyEmail: bool = True  # noqa: N815
    notifyInApp: bool = True  # noqa: N815
    notifySlack: bool = False  # noqa: N815

    @field_validator("name")
    @classmethod
    def _name_is_text(cls, value: str) -> str:
        _check_text(value, "name")
        return value

    @field_validator("config")
    @classmethod
    def _config_is_bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_config(value)
        return value


class EvaluationOut(BaseModel):
    rule_id: str
    action: str
    event_id: str | None = None
    error: str | None = None


def _check_revision(engine: Engine) -> None:
    """Refuse to start on a database without the engine's tables (``"ApiKey"`` is created by migration 0003)."""
    from sqlalchemy import inspect

    with engine.connect() as conn:
        if not inspect(conn).has_table("ApiKey"):
            raise ConfigError(
                'the database has no "ApiKey" table (migration 0003 of the Optiq schema): run `optiq db upgrade` first'
            )


def create_app(
    database_url: str | None = None,
    *,
    engine: Engine | None = None,
    limits: Limits | None = None,
    role: str | None = tenancy.SERVICE_ROLE,
) -> FastAPI:
    """The FastAPI application over the database at ``database_url`` (default ``$OPTIQ_DATABASE_URL``).

    Parameters
    ----------
    database_url
        PostgreSQL URL; ignored when ``engine`` is given.
    engine
        A SQLAlchemy engine to use (the caller disposes of it; its pool should hold ``limits.slots``
        connections plus overflow).
    limits
        Requests at once, queue and timeouts of this worker; default :meth:`Limits.from_env` (sized from
        ``OPTIQ_SERVICE_WORKERS`` and ``OPTIQ_SERVICE_DB_CONNECTIONS``).
    role
        The role every transaction acts as (``SET LOCAL ROLE``), subject to row-level security:
        ``optiq_service`` by default (``$OPTIQ_SERVICE_ROLE`` when set); ``None`` when the login role is
        already such a role. The service refuses to start when its transactions would bypass row-level
        security.

    Raises
    ------
    ConfigError
        No database URL, or invalid limits; at startup, a database without the engine's tables, without
        migration 0007, or whose service role is missing or bypasses row-level security.
    """
    limits = limits or Limits.from_env()
    if role == tenancy.SERVICE_ROLE:
        role = os.environ.get("OPTIQ_SERVICE_ROLE") or role
    if engine is None:
        from ..io.db import normalise_url

        url = database_url or os.environ.get("OPTIQ_DATABASE_URL")
        if not url:
            raise ConfigError("no database: pass database_url or set OPTIQ_DATABASE_URL")
        engine = create_engine(normalise_url(url), **limits.engine_options())
    db = tenancy.scoped_engine(engine, role=role)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        _check_revision(engine)
        tenancy.check_service_role(engine, role)
        yield

    app = FastAPI(
        title="Optiq Engine service",
        version="1",
        description="Metrics, attribution credit and alerts of one organization (the API key's).",
        lifespan=lifespan,
    )
    app.state.engine = db
    app.state.limits = limits
    # Outermost first: NUL bytes are refused before anything else, then admission, then the catch-all (inside
    # Starlette's ServerErrorMiddleware, which would close the connection after a 500).
    app.add_middleware(CatchAll)
    app.add_middleware(AdmissionControl, limits=limits)
    app.add_middleware(RejectNul)

    # --- errors ------------------------------------------------------------------------------------------
    def problem(status: int, detail: Any) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": jsonable_encoder(detail)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422, with the offending input echoed as JSON can hold it (NaN and infinities as text).
        return problem(422, _finite_json(jsonable_encoder(exc.errors())))

    @app.exception_handler(RuleConfigError)
    async def _rule_config(_: Request, exc: RuleConfigError) -> JSONResponse:
        fields = [{"loc": ["body", *k.split(".")], "msg": v, "type": "value_error"} for k, v in exc.errors.items()]
        return problem(422, fields)

    @app.exception_handler(CurrencyError)
    async def _currency(_: Request, exc: CurrencyError) -> JSONResponse:
        return problem(422, [{"loc": ["query", "currency"], "msg": str(exc), "type": "value_error", "currencies": exc.currencies}])

    @app.exception_handler(ConfigError)
    async def _config(_: Request, exc: ConfigError) -> JSONResponse:
        field = str(exc).split(" ", 1)[0]
        loc = ["query", field] if field in _QUERY_FIELDS else ["query"]
        return problem(422, [{"loc": loc, "msg": str(exc), "type": "value_error"}])

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(TransitionError)
    async def _transition(_: Request, exc: TransitionError) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(PermissionDeniedError)
    async def _denied(_: Request, exc: PermissionDeniedError) -> JSONResponse:
        return problem(403, str(exc))

    @app.exception_handler(OptiqError)
    async def _optiq(_: Request, exc: OptiqError) -> JSONResponse:
        return problem(422, str(exc))

    def busy(why: str) -> JSONResponse:
        status, body, headers = busy_response(limits.retry_after, why)
        return JSONResponse(status_code=status, content=body, headers=headers)

    @app.exception_handler(sa_exc.TimeoutError)
    async def _pool_exhausted(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        logger.warning("503 on %s %s: no database connection within %s s", request.method, request.url.path, limits.pool_timeout)
        return busy("no database connection free")

    @app.exception_handler(sa_exc.OperationalError)
    async def _database_unavailable(request: Request, exc: sa_exc.OperationalError) -> JSONResponse:
        # Server unreachable or out of connections, a statement or lock timeout: the request may succeed later.
        logger.warning("503 on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__ if exc.orig else exc)
        return busy("the database is unavailable or a statement timed out")

    @app.exception_handler(sa_exc.DataError)
    async def _data_error(request: Request, exc: sa_exc.DataError) -> JSONResponse:
        # A value the database cannot hold or compute (e.g. an amount times a rate beyond bigint): the input's doing.
        logger.info("422 on %s %s: %s", request.method, request.url.path, exc.orig)
        return problem(422, [{"loc": ["query"], "msg": "a value is out of the range the database can hold", "type": "value_error"}])

    # --- routes ------------------------------------------------------------------------------------------
    @app.get("/v1/health", tags=["system"])
    def health() -> dict[str, str]:
        """Liveness (no key needed, no database access)."""
        return {"status": "ok"}

    @app.get("/v1/metrics", tags=["metrics"], responses=_ERRORS, response_model=Rows)
    def metrics(
        caller: Caller,
        conn: Conn,
        start: date,
        end: date,
        grain: GrainName = "campaign",
        model: Model = "LAST_TOUCH",
        daily: bool = False,
        compare: bool = True,
        platform: Platform | None = None,
        ad_account_id: IdFilter = None,
        campaign_id: IdFilter = None,
        ad_id: IdFilter = None,
        currency: Annotated[str | None, Query(pattern="^[A-Z]{3}$", description="Report every amount in this currency")] = None,
        rate: Annotated[list[Rate] | None, Query(description="Conversion rates to `currency`, e.g. `EUR:1.08` (repeat)")] = None,
        conversion_name: ConversionName = None,
    ) -> Response:
        """Spend, delivery and attributed results per key (and day), with the previous-period comparison.

        At grain ``channel`` spend is mapped to channels by the rules that give touchpoints theirs (a platform's
        spend goes to the channel of its click id: ``google_ads``, ``meta_ads``, ``tiktok_ads``); ROAS is the
        model's revenue credited to the channel over that spend. Spend no rule maps is the row whose
        ``channel`` is null (``name`` ``(unmapped)``); the channels' spend adds up to the organization's.
        ``conversion_name`` keeps the attributed results of one conversion type (spend is not per type).
        """
        conversion = None
        if currency is not None:
            conversion = CurrencyConversion(currency, dict(r.split(":", 1) for r in rate or []))
        elif rate:
            raise RuleConfigError({"currency": "required with rate: the currency the rates convert to"})
        query = MetricsQuery(
            caller.organization_id, start, end, model=model, grain=grain, daily=daily, compare=compare, platform=platform,
            ad_account_id=ad_account_id, campaign_id=campaign_id, ad_id=ad_id, conversion=conversion,
            conversion_name=conversion_name,
        )  # fmt: skip
        return _rows_response(grain, start, end, read_metrics(query, conn, require_results=True))

    @app.get("/v1/credit", tags=["metrics"], responses=_ERRORS, response_model=Rows)
    def credit(
        caller: Caller,
        conn: Conn,
        start: date,
        end: date,
        grain: GrainName = "channel",
        model: Annotated[list[Model] | None, Query(description="Models (repeat); default all")] = None,
        conversion_name: ConversionName = None,
    ) -> Response:
        """Attributed conversions and revenue per key and model, as the engine wrote them."""
        if start > end:
            raise ConfigError(f"start {start} must not be after end {end}")
        frame = read_credit(conn, organization_id=caller.organization_id, start=start, end=end, models=model, grain=grain,
                            conversion_name=conversion_name)  # fmt: skip
        return _rows_response(grain, start, end, frame)

    @app.get("/v1/alerts", tags=["alerts"], responses=_ERRORS)
    def list_alerts(
        caller: Caller,
        conn: Conn,
        status: EventStatus | None = None,
        severity: Severity | None = None,
        rule_id: IdFilter = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Alert events, newest first."""
        return alerts.read_events(conn, organization_id=caller.organization_id, status=status, severity=severity, rule_id=rule_id, limit=limit)

    @app.get("/v1/alerts/{event_id}", tags=["alerts"], responses=_ERRORS)
    def get_alert(caller: Caller, conn: Conn, event_id: Id) -> dict[str, Any]:
        """One alert event."""
        return alerts.read_event(conn, event_id, organization_id=caller.organization_id)

    def _lifecycle(op, summary: str):
        def route(caller: Writer, conn: Conn, event_id: Id) -> dict[str, Any]:
            return op(conn, event_id, organization_id=caller.organization_id, by=caller.user_id)

        route.__doc__ = summary
        return route

    for verb, op in (("acknowledge", alerts.acknowledge), ("resolve", alerts.resolve), ("dismiss", alerts.dismiss)):
        app.post(
            f"/v1/alerts/{{event_id}}/{verb}", tags=["alerts"], name=verb,
            responses={**_ERRORS, 409: {"description": "Not allowed from the event's current status"}},
        )(_lifecycle(op, f"{verb.capitalize()} an alert event (the key's user is recorded as who)."))  # fmt: skip

    @app.post("/v1/alerts/evaluate", tags=["alerts"], responses=_ERRORS)
    def evaluate(
        caller: Writer, limit: Annotated[int, Query(ge=1, le=1000, description="Evaluate at most this many rules")] = 100
    ) -> list[EvaluationOut]:
        """Evaluate the organization's due rules now (at most ``limit``; the others stay due for the next call)."""
        scoped = tenancy.for_organization(db, caller.organization_id)
        done = alerts.evaluate_due(scoped, organization_id=caller.organization_id, limit=limit)
        return [EvaluationOut(rule_id=e.rule_id, action=e.action, event_id=e.event_id, error=e.error) for e in done]

    @app.get("/v1/alert-rules", tags=["alert rules"], responses=_ERRORS)
    def list_rules(caller: Caller, conn: Conn, status: Literal["ACTIVE", "PAUSED", "ARCHIVED"] | None = None) -> list[dict[str, Any]]:
        """Alert rules, newest first."""
        return alerts.read_rules(conn, organization_id=caller.organization_id, status=status)

    @app.post("/v1/alert-rules", tags=["alert rules"], status_code=201, responses=_ERRORS)
    def create_rule(caller: Writer, conn: Conn, rule: RuleIn) -> dict[str, Any]:
        """Create an alert rule; its config is validated per type (422 names every bad field)."""
        return alerts.create_rule(
            conn, organization_id=caller.organization_id, name=rule.name, type=rule.type, config=rule.config,
            severity=rule.severity, status=rule.status, evaluation_interval=rule.evaluationInterval,
            notify_email=rule.notifyEmail, notify_in_app=rule.notifyInApp, notify_slack=rule.notifySlack,
        )  # fmt: skip

    @app.get("/v1/alert-rules/{rule_id}", tags=["alert rules"], responses=_ERRORS)
    def get_rule(caller: Caller, conn: Conn, rule_id: Id) -> dict[str, Any]:
        """One alert rule."""
        return alerts.read_rule(conn, rule_id, organization_id=caller.organization_id)

    @app.post("/v1/alert-rules/{rule_id}/evaluate", tags=["alert rules"], responses=_ERRORS)
    def evaluate_rule(caller: Writer, conn: Conn, rule_id: Id) -> EvaluationOut:
        """Evaluate one rule now, due or not."""
        e = alerts.evaluate_now(conn, rule_id, organization_id=caller.organization_id)
        return EvaluationOut(rule_id=e.rule_id, action=e.action, event_id=e.event_id, error=e.error)

    return app
