"""Admission control and input guards of the HTTP API: the service degrades under load, it does not fail.

Each worker process handles at most :attr:`Limits.slots` requests at once, the size of its database pool;
the others wait in a bounded queue (first come, first served). A request that finds the queue full, or
that waited :attr:`Limits.queue_timeout` seconds for a slot, is answered ``503`` with ``Retry-After``
instead of piling up on the pool (where it would time out as a ``500``) or on the socket (a reset).
``GET /v1/health`` is never queued. The database side is bounded too (pool checkout, statement and lock
timeouts, :meth:`Limits.connect_args`); running out of either is a ``503`` with ``Retry-After`` as well.

The middlewares here are plain ASGI (no Starlette ``BaseHTTPMiddleware``): they add no task per request
and never close a keep-alive connection; an unexpected error is a ``500`` JSON body after which the
connection stays usable.

Sizes come from the number of worker processes and a budget of database connections for the whole
service (``OPTIQ_SERVICE_DB_CONNECTIONS``, default 32): per worker, ``slots = budget // (2 x workers)``
(between 2 and 16) pooled connections plus as many overflow connections, which only the alert
evaluation endpoint uses (it holds the request's connection and opens one per rule). So a service never
opens more than ``2 x slots x workers`` connections; keep that below the server's ``max_connections``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError

__all__ = ["Limits", "AdmissionControl", "RejectNul", "CatchAll", "busy_response"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Environment variables read by :meth:`Limits.from_env` (``optiq serve`` sets the first for its workers).
ENV_WORKERS = "OPTIQ_SERVICE_WORKERS"
ENV_CONNECTIONS = "OPTIQ_SERVICE_DB_CONNECTIONS"
ENV_QUEUE = "OPTIQ_SERVICE_QUEUE"
ENV_QUEUE_TIMEOUT = "OPTIQ_SERVICE_QUEUE_TIMEOUT"
ENV_STATEMENT_TIMEOUT = "OPTIQ_SERVICE_STATEMENT_TIMEOUT"
DEFAULT_CONNECTIONS = 32


@dataclass(frozen=True)
class Limits:
    """How much one worker process takes on at once, and how long it waits.

    Parameters
    ----------
    slots
        Requests handled at once (each holds one pooled database connection); also the pool's size.
    queue
        Requests waiting for a slot beyond which a new one is refused at once (503).
    queue_timeout
        Seconds a request waits for a slot before it is refused (503).
    retry_after
        Seconds sent in ``Retry-After`` with a 503.
    statement_timeout
        Seconds a SQL statement of the service may run (Postgres ``statement_timeout``); a cancelled
        statement is a 503.
    lock_timeout
        Seconds a statement waits for a row or table lock (``lock_timeout``).
    pool_timeout
        Seconds to wait for a pooled connection (only the overflow can run out: 503).
    """

    slots: int = 8
    queue: int = 256
    queue_timeout: float = 20.0
    retry_after: int = 2
    statement_timeout: float = 30.0
    lock_timeout: float = 10.0
    pool_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.slots <= 256:
            raise ConfigError(f"slots must be between 1 and 256, got {self.slots}")
        if not 0 <= self.queue <= 100_000:
            raise ConfigError(f"queue must be between 0 and 100000, got {self.queue}")
        for name in ("queue_timeout", "statement_timeout", "lock_timeout", "pool_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ConfigError(f"{name} must be between 0 and 3600 seconds (exclusive of 0), got {value}")
        if not 1 <= self.retry_after <= 3600:
            raise ConfigError(f"retry_after must be between 1 and 3600 seconds, got {self.retry_after}")

    @classmethod
    def for_workers(cls, workers: int, *, connections: int = DEFAULT_CONNECTIONS, **overrides: Any) -> Limits:
        """The limits of one of ``workers`` processes sharing a budget of ``connections`` database connections.

        Parameters
        ----------
        workers
            Worker processes of the server (>= 1).
        connections
            Database connections all workers may open together (>= 2; default 32): each worker gets
            ``connections // (2 x workers)`` slots, at least 2 and at most 16 (a worker opens up to twice
            its slots).
        **overrides
            Other :class:`Limits` fields.

        Returns
        -------
        Limits

        Raises
        ------
        ConfigError
            ``workers < 1``, ``connections < 2``, or an override out of range.

        Examples
        --------
        >>> Limits.for_workers(2).slots  # 2 workers x (8 pooled + 8 overflow) = 32 connections at most
        8
        >>> Limits.for_workers(16).slots  # never below 2
        2
        """
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if connections < 2:
            raise ConfigError(f"the database connection budget must be at least 2, got {connections}")
        return cls(slots=max(2, min(16, connections // (2 * workers))), **overrides)

    @classmethod
    def from_env(cls) -> Limits:
        """The limits of this worker from ``OPTIQ_SERVICE_WORKERS`` (default: one per core, as ``optiq serve``),
        ``OPTIQ_SERVICE_DB_CONNECTIONS``, ``OPTIQ_SERVICE_QUEUE``, ``OPTIQ_SERVICE_QUEUE_TIMEOUT`` and
        ``OPTIQ_SERVICE_STATEMENT_TIMEOUT`` (seconds)."""

        def number(name: str, default: float, kind: type = int) -> Any:
            raw = os.environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None

        limits = cls.for_workers(
            number(ENV_WORKERS, os.cpu_count() or 1), connections=number(ENV_CONNECTIONS, DEFAULT_CONNECTIONS)
        )
        return replace(
            limits,
            queue=number(ENV_QUEUE, limits.queue),
            queue_timeout=number(ENV_QUEUE_TIMEOUT, limits.queue_timeout, float),
            statement_timeout=number(ENV_STATEMENT_TIMEOUT, limits.statement_timeout, float),
        )

    @property
    def max_connections(self) -> int:
        """Database connections one worker may open: the pool and its overflow."""
        return 2 * self.slots

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sqlalchemy.create_engine` for the service's pool."""
        return {
            "pool_size": self.slots,
            "max_overflow": self.slots,
            "pool_timeout": self.pool_timeout,
            "pool_pre_ping": True,
            "connect_args": self.connect_args(),
        }

    def connect_args(self) -> dict[str, Any]:
        """psycopg connection arguments bounding every statement of the service's sessions."""
        ms = {k: int(getattr(self, k) * 1000) for k in ("statement_timeout", "lock_timeout")}
        options = f"-c statement_timeout={ms['statement_timeout']} -c lock_timeout={ms['lock_timeout']} -c idle_in_transaction_session_timeout=60000"
        return {"connect_timeout": 5, "options": options, "application_name": "optiq-service"}


def _json(status: int, detail: Any, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


async def _send_json(send: Send, status: int, detail: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    start, body = _json(status, detail, headers)
    await send(start)
    await send(body)


def busy_response(retry_after: int, why: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of a 503 (the service is saturated; try again after ``retry_after`` s).

    Parameters
    ----------
    retry_after
        Seconds, sent in ``Retry-After`` and in the message.
    why
        What is saturated, for the message (``"no slot within 20 s"``).

    Returns
    -------
    status : int
        503.
    body : dict
        ``{"detail": "the service is busy (<why>); retry after <n> s"}``.
    headers : dict
        ``{"Retry-After": "<n>"}``.
    """
    return (
        503,
        {"detail": f"the service is busy ({why}); retry after {retry_after} s"},
        {"Retry-After": str(retry_after)},
    )


class AdmissionControl:
    """At most ``limits.slots`` requests in the application at once per worker; a bounded FIFO queue; 503
    with ``Retry-After`` past it. Paths in ``exempt`` are never queued.

    Parameters
    ----------
    app
        The ASGI application wrapped.
    limits
        ``slots``, ``queue``, ``queue_timeout`` and ``retry_after`` of this worker.
    exempt
        Paths let through without a slot (default the health check, ``/v1/health``).
    """

    def __init__(self, app: ASGIApp, *, limits: Limits, exempt: tuple[str, ...] = ("/v1/health",)) -> None:
        self.app = app
        self.limits = limits
        self.exempt = frozenset(exempt)
        self.waiting = 0
        self.running = 0
        self._slots: asyncio.Semaphore | None = None  # made in the worker's event loop, at the first request

    async def _refuse(self, send: Send, why: str) -> None:
        status, body, headers = busy_response(self.limits.retry_after, why)
        logger.warning("503: %s (%d running, %d waiting)", why, self.running, self.waiting)
        await _send_json(send, status, body["detail"], [(k.lower().encode(), v.encode()) for k, v in headers.items()])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.slots)
        slots = self._slots
        if slots.locked() and self.waiting >= self.limits.queue:
            await self._refuse(send, f"{self.waiting} requests already waiting")
            return
        self.waiting += 1
        try:
            async with asyncio.timeout(self.limits.queue_timeout):
                await slots.acquire()
        except TimeoutError:
            await self._refuse(send, f"no slot within {self.limits.queue_timeout:g} s")
            return
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1
            slots.release()


def _has_nul(scope: Scope) -> str | None:
    """Where a NUL byte is in the request's path or query string (raw ``\\x00`` or percent-encoded), if anywhere."""
    raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    if b"\x00" in raw_path or b"%00" in raw_path or "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        return "query"
    return None


class RejectNul:
    """422 for a NUL byte anywhere in the path or query string, before routing (Postgres text cannot hold one).

    Parameters
    ----------
    app
        The ASGI application wrapped.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = _has_nul(scope) if scope["type"] == "http" else None
        if where is None:
            await self.app(scope, receive, send)
            return
        detail = [{"loc": [where], "msg": "must not contain a NUL byte (0x00, %00)", "type": "value_error"}]
        await _send_json(send, 422, detail)


class CatchAll:
    """The last line: an exception no handler took becomes a generic 500 JSON (details logged, never sent) and
    the connection stays open for the next request (Starlette's own handler re-raises, and the server then
    closes the keep-alive connection).

    Parameters
    ----------
    app
        The ASGI application wrapped. An exception after the response has started is re-raised (nothing
        else can be sent).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await _send_json(send, 500, "internal error; see the service log")
