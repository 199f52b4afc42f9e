"""How the HTTP API answers errors: the exception handlers :func:`install` registers on the application.

Every error body is ``{"detail": ...}``. Invalid input is a 422 naming the field (FastAPI's validation, a rule's
config, a currency, a query parameter, a value the database cannot hold); an object outside the key's
organization is a 404, a forbidden status change a 409, a missing permission a 403. A database that is out of
connections, unreachable or timed out is a 503 with ``Retry-After`` (the request may succeed later).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from ..errors import ConfigError, OptiqError
from .errors import CurrencyError, NotFoundError, PermissionDeniedError, RuleConfigError, TransitionError
from .limits import busy_response

__all__ = ["install"]

# The records keep the logger name they had when the handlers were part of the API module.
logger = logging.getLogger("optiq_engine.service.api")

_QUERY_FIELDS = {
    "start",
    "end",
    "model",
    "grain",
    "platform",
    "ad_account_id",
    "campaign_id",
    "ad_id",
    "currency",
    "rate",
}


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


def _problem(status: int, detail: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": jsonable_encoder(detail)})


def _busy(request: Request, why: str) -> JSONResponse:
    status, body, headers = busy_response(request.app.state.limits.retry_after, why)
    return JSONResponse(status_code=status, content=body, headers=headers)


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own 422, with the offending input echoed as JSON can hold it (NaN and infinities as text).
    return _problem(422, _finite_json(jsonable_encoder(exc.errors())))


async def _rule_config(_: Request, exc: RuleConfigError) -> JSONResponse:
    fields = [{"loc": ["body", *k.split(".")], "msg": v, "type": "value_error"} for k, v in exc.errors.items()]
    return _problem(422, fields)


async def _currency(_: Request, exc: CurrencyError) -> JSONResponse:
    return _problem(
        422, [{"loc": ["query", "currency"], "msg": str(exc), "type": "value_error", "currencies": exc.currencies}]
    )


async def _config(_: Request, exc: ConfigError) -> JSONResponse:
    field = str(exc).split(" ", 1)[0]
    loc = ["query", field] if field in _QUERY_FIELDS else ["query"]
    return _problem(422, [{"loc": loc, "msg": str(exc), "type": "value_error"}])


async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
    return _problem(404, str(exc))


async def _transition(_: Request, exc: TransitionError) -> JSONResponse:
    return _problem(409, str(exc))


async def _denied(_: Request, exc: PermissionDeniedError) -> JSONResponse:
    return _problem(403, str(exc))


async def _optiq(_: Request, exc: OptiqError) -> JSONResponse:
    return _problem(422, str(exc))


async def _pool_exhausted(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
    timeout = request.app.state.limits.pool_timeout
    logger.warning("503 on %s %s: no database connection within %s s", request.method, request.url.path, timeout)
    return _busy(request, "no database connection free")


async def _database_unavailable(request: Request, exc: sa_exc.OperationalError) -> JSONResponse:
    # Server unreachable or out of connections, a statement or lock timeout: the request may succeed later.
    logger.warning("503 on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__ if exc.orig else exc)
    return _busy(request, "the database is unavailable or a statement timed out")


async def _data_error(request: Request, exc: sa_exc.DataError) -> JSONResponse:
    # A value the database cannot hold or compute (e.g. an amount times a rate beyond bigint): the input's doing.
    logger.info("422 on %s %s: %s", request.method, request.url.path, exc.orig)
    return _problem(
        422, [{"loc": ["query"], "msg": "a value is out of the range the database can hold", "type": "value_error"}]
    )


_HANDLERS: tuple[tuple[type[Exception], Any], ...] = (
    (RequestValidationError, _invalid),
    (RuleConfigError, _rule_config),
    (CurrencyError, _currency),
    (ConfigError, _config),
    (NotFoundError, _not_found),
    (TransitionError, _transition),
    (PermissionDeniedError, _denied),
    (OptiqError, _optiq),
    (sa_exc.TimeoutError, _pool_exhausted),
    (sa_exc.OperationalError, _database_unavailable),
    (sa_exc.DataError, _data_error),
)


def install(app: FastAPI) -> None:
    """Register the API's exception handlers on ``app``.

    Parameters
    ----------
    app
        The application; its ``state.limits`` (:class:`~optiq_engine.service.limits.Limits`) gives the
        ``Retry-After`` of the 503 answers and the pool timeout they log.
    """
    for exc_class, handler in _HANDLERS:
        app.add_exception_handler(exc_class, handler)
