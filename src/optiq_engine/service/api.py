"""The HTTP API (FastAPI): metrics, attribution credit, alert events and rules of the caller's organization.

Every request but ``GET /v1/health`` carries an API key (``Authorization: Bearer optiq_...``, see
:mod:`optiq_engine.service.keys`); everything it reads or changes is filtered by the key's organization,
so another organization's rule or event is a 404, exactly like one that does not exist. Below the queries'
own filters, each transaction acts as a role under row-level security scoped to the key's organization
(:mod:`optiq_engine.service.tenancy`). VIEWER keys are read-only (403 on writes). Validation errors are
422 naming the field, NUL bytes and out-of-range numbers included; a saturated worker answers 503 with
``Retry-After`` (:mod:`optiq_engine.service.limits`); unexpected errors are a 500 with a generic body
(details go to the log, never to the client), and the connection stays open.

Run it with ``optiq serve`` (uvicorn) or ``uvicorn --factory`` on :func:`create_app`. The routes are in
:mod:`optiq_engine.service.routes` (one module per resource), what they depend on (the request's
transaction, the API key, the role check) in :mod:`optiq_engine.service.dependencies`, their request and
response shapes in :mod:`optiq_engine.service.schemas` and the error answers in
:mod:`optiq_engine.service.error_handlers`.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine, create_engine

from ..errors import ConfigError
from . import error_handlers, tenancy
from .dependencies import Caller, Conn, Writer
from .limits import AdmissionControl, CatchAll, Limits, RejectNul
from .routes import ROUTERS

# Caller, Conn and Writer are re-exported for routes added to the application (see tests/service/test_service_rls.py).
__all__ = ["Caller", "Conn", "Writer", "create_app"]


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

    Returns
    -------
    fastapi.FastAPI
        The application; the database checks run at its startup.

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
    app.state.engine = db  # the requests' transactions and the alert evaluation's (routes.alerts)
    app.state.limits = limits  # Retry-After of the 503 answers (error_handlers)
    # Outermost first: NUL bytes are refused before anything else, then admission, then the catch-all (inside
    # Starlette's ServerErrorMiddleware, which would close the connection after a 500).
    app.add_middleware(CatchAll)
    app.add_middleware(AdmissionControl, limits=limits)
    app.add_middleware(RejectNul)

    error_handlers.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
