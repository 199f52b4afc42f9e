"""The connections of one job: a small pool of ADBC connections, opened when first needed and reused.

A job (:func:`optiq_engine.batch.run_batch`) owns one :class:`Connections` and passes it down: every read
(:mod:`.read`), the stored rows a merge compares with and the writing transaction (:mod:`.merge`) borrow a
connection from it instead of opening their own. Reads that run at once (a slice's touchpoints and
conversions, index probes split over connections, the stored journeys read while the links merge) borrow one
each, so the pool holds as many connections as were ever in use at once. Every function that takes a job's
pool also takes a URL, for a call on its own (a pool of one call, closed after it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from ...errors import ConfigError

__all__ = ["Connections", "adbc_url", "connections"]


def adbc_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` -> ``postgresql://``).

    Parameters
    ----------
    url
        A URL whose scheme starts with ``postgresql`` or ``postgres`` (any driver suffix).

    Returns
    -------
    str
        ``postgresql://`` followed by the rest of ``url``, unchanged.

    Raises
    ------
    ConfigError
        ``url`` has no ``://`` or another scheme.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ConfigError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql://{rest}"


def _inline(sql: str, params: list[Any]) -> str:
    """``sql`` with ``$n`` replaced by properly quoted literals (psycopg's quoting).

    ADBC streams a query through binary ``COPY ... TO STDOUT`` only when it has no bind parameters; with
    parameters it falls back to a slower row-by-row result.
    """
    from psycopg.sql import Literal

    for i in range(len(params), 0, -1):  # $10 before $1
        sql = sql.replace(f"${i}", Literal(params[i - 1]).as_string(None))
    return sql


def _may_set(cur: Any, parameter: str) -> bool:
    """Whether this role may set a superuser-only ``parameter`` (superuser, or granted ``SET`` on it, PG 15+)."""
    cur.execute("SELECT current_setting('is_superuser') = 'on', current_setting('server_version_num')::int")
    superuser, version = cur.fetchone()
    if superuser:
        return True
    if version < 150000:
        return False
    cur.execute(_inline("SELECT has_parameter_privilege($1, 'SET')", [parameter]))
    return bool(cur.fetchone()[0])


#: Merges stage millions of ids in temporary tables and hash-join them: with the defaults (8 MB of local
#: buffers, 4 MB per hash) and a primary key on the staging table, a 2M-row scope took 13 s to copy in
#: (under 1 s now). Ceilings, allocated only as used; ``temp_buffers`` must be set before the session
#: first touches a temporary table.
_SESSION = ("SET temp_buffers = '1GB'", "SET work_mem = '256MB'")

#: Full-page images are most of what a merge writes to the WAL: the first change of a page after a checkpoint
#: logs the whole page, and the links' ``touchPointId`` index, the locked rows and the journeys' indexes are
#: changed at random. Compressed (lz4) when the server logs them raw and the role may say so (superuser, or
#: ``GRANT SET ON PARAMETER wal_compression``): an incremental run at 10M touchpoints (20k users) wrote
#: 1.18-1.28 GB of WAL, 81% page images; 0.68-0.77 GB with lz4 (``benchmarks/RESULTS.md``).
_RAW_PAGE_IMAGES = """SELECT current_setting('wal_compression') = 'off' AND 'lz4' = ANY(enumvals)
FROM pg_settings WHERE name = 'wal_compression'"""


def _compress_wal(cur: Any) -> None:
    cur.execute(_RAW_PAGE_IMAGES)
    if cur.fetchone()[0] and _may_set(cur, "wal_compression"):
        cur.execute("SET wal_compression = lz4")


class Connections:
    """A pool of ADBC connections to one database, for one job (a context manager: closed at its end).

    Parameters
    ----------
    url
        A PostgreSQL URL (``postgresql://`` or SQLAlchemy's ``postgresql+psycopg://``).

    Raises
    ------
    ConfigError
        ``url`` is not a PostgreSQL URL (:func:`adbc_url`); no connection is opened before the first use.

    Notes
    -----
    Each connection is set up once when opened (:data:`_SESSION`, WAL compression: the settings a merge
    needs, and ``temp_buffers`` may only be set before the session's first temporary table). A borrowed
    connection comes back with its transaction ended (rolled back: a read's snapshot is released; a write
    commits before it returns); one that fails to roll back is closed instead of reused.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._dsn = adbc_url(url)
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._lock = threading.Lock()

    @property
    def opened(self) -> int:
        """How many connections the pool has opened so far."""
        return len(self._all)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection of the pool, for this thread only until the block ends."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def _open(self) -> Any:
        import adbc_driver_postgresql.dbapi as adbc

        conn = adbc.connect(self._dsn)
        with self._lock:
            self._all.append(conn)
        with conn.cursor() as cur:
            for setting in _SESSION:
                cur.execute(setting)
            _compress_wal(cur)
        conn.commit()  # session settings made inside a transaction last only if it commits
        return conn

    def _give_back(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:  # a broken connection: closed, never handed out again
            self._discard(conn)
            return
        with self._lock:
            self._idle.append(conn)

    def _discard(self, conn: Any) -> None:
        with self._lock:
            self._all.remove(conn)
        with suppress(Exception):
            conn.close()

    def close(self) -> None:
        """Close every connection of the pool (borrowed ones included: call it when the job is done)."""
        with self._lock:
            conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            with suppress(Exception):
                conn.close()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def connections(source: str | Connections) -> Iterator[Connections]:
    """``source`` itself when it is a job's pool; else a pool of its own for the block, closed after it.

    Parameters
    ----------
    source
        A job's :class:`Connections` (left open), or a PostgreSQL URL.

    Yields
    ------
    Connections

    Raises
    ------
    ConfigError
        ``source`` is a string that is not a PostgreSQL URL.
    """
    if isinstance(source, Connections):
        yield source
        return
    with Connections(source) as pool:
        yield pool
