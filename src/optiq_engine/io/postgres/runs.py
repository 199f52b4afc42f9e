"""The nightly run's bookkeeping in Postgres: the organization's run lock, ``EngineRun`` rows and the change log.

A run (:func:`optiq_engine.batch.run_batch`) holds :func:`run_lock` (a session-level advisory lock on one
organization) on a psycopg connection for as long as it runs, and every function here takes that
connection. ``EngineRun`` records each run (RUNNING, then SUCCEEDED with its summary and the change-log
snapshot it started in, or FAILED with the error); runs left RUNNING by a process that is gone are marked
ABANDONED by the next one. The change log (``"EngineChange"``, migration 0008) names the users an
incremental run recomputes (the module docstring of :mod:`optiq_engine.batch`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import polars as pl

from ...errors import ConfigError, OptiqError
from .connections import adbc_url

__all__ = [
    "RunLocked",
    "changed_users",
    "campaigns_changed",
    "check_site",
    "compact_summaries",
    "extracted_last_time",
    "fail_run",
    "finish_run",
    "journey_users",
    "mark_abandoned",
    "previous_fingerprint",
    "previous_snapshot",
    "prune_changes",
    "read_settings",
    "run_lock",
    "scope_has_only_events",
    "start_run",
    "start_snapshot",
]

log = logging.getLogger(__name__)


class RunLocked(OptiqError, RuntimeError):
    """Another run for the same organization holds the lock."""


@contextmanager
def run_lock(url: str, organization_id: str, *, wait: bool) -> Iterator[Any]:
    """A session-level advisory lock on the organization, held for the whole run (and its connection).

    Parameters
    ----------
    url
        The database URL (any form :func:`~optiq_engine.io.postgres.adbc_url` accepts).
    organization_id
        The organization whose runs are serialised (``Organization.id``).
    wait
        Wait for the lock (``optiq run --wait``) instead of failing at once when another run holds it.

    Yields
    ------
    psycopg.Connection
        An autocommit connection holding the lock; the lock is released, and the connection closed, when the
        block ends.

    Raises
    ------
    RunLocked
        ``wait=False`` and another run of the organization holds the lock.
    """
    import psycopg

    with psycopg.connect(adbc_url(url), autocommit=True) as conn:
        key = f"optiq-engine-run:{organization_id}"
        if wait:
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        else:
            (ok,) = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()  # type: ignore[misc]
            if not ok:
                raise RunLocked(
                    f"another run for organization {organization_id!r} is in progress; retry later or pass --wait"
                )
        try:
            yield conn
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def compact_summaries(conn: Any) -> None:
    """Rebuild the summaries' indexes (a rewrite leaves them about twice their size, half-empty pages from
    the deleted rows and from sorted runs inserted mid-index) and vacuum them (pages all-visible: reports
    then read the indexes alone). ``REINDEX CONCURRENTLY`` blocks no reader or writer; a role that does not
    own the tables is told so in the log and the summaries stay as they are, correct but slower to read.

    Parameters
    ----------
    conn
        An autocommit psycopg connection (``REINDEX CONCURRENTLY`` and ``VACUUM`` cannot run in a
        transaction block).
    """
    import psycopg

    try:
        for table in ("EngineCreditDaily", "EngineSpendDaily"):
            conn.execute(f'REINDEX TABLE CONCURRENTLY "{table}"')
        conn.execute('VACUUM (ANALYZE) "EngineCreditDaily", "EngineSpendDaily"')
    except psycopg.errors.InsufficientPrivilege as exc:
        log.warning("summaries not compacted (the tables' owner can: REINDEX, VACUUM): %s", exc)


def read_settings(conn: Any, organization_id: str) -> dict[str, Any]:
    """The organization's ``OrganizationSettings.attributionSettings`` (``{}`` when unset).

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id``.

    Returns
    -------
    dict
        The settings JSON as stored (:func:`optiq_engine.batch.settings_from_json` reads it).

    Raises
    ------
    ConfigError
        No such organization.
    """
    row = conn.execute(
        """SELECT o.id, st."attributionSettings" FROM "Organization" o
           LEFT JOIN "OrganizationSettings" st ON st."organizationId" = o.id WHERE o.id = %s""",
        (organization_id,),
    ).fetchone()
    if row is None:
        raise ConfigError(f"no organization {organization_id!r} in the database")
    return row[1] or {}


def check_site(conn: Any, organization_id: str, site_id: str | None) -> None:
    """A ``--site`` must be a tracking site of the organization (it would read nothing and succeed).

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id``.
    site_id
        ``TrackingSite.id``, or None (no check: the whole organization).

    Raises
    ------
    ConfigError
        No tracking site ``site_id``, or it belongs to another organization.
    """
    if site_id is None:
        return
    row = conn.execute('SELECT "organizationId" FROM "TrackingSite" WHERE id = %s', (site_id,)).fetchone()
    if row is None or row[0] != organization_id:
        whose = "no tracking site" if row is None else "a tracking site of another organization"
        raise ConfigError(
            f"site {site_id!r} is {whose}, not of organization {organization_id!r}: nothing was run. "
            'Name one of its sites (SELECT id FROM "TrackingSite" WHERE "organizationId" = ...), or omit --site'
        )


def mark_abandoned(conn: Any, organization_id: str) -> int:
    """Mark runs left RUNNING by a process that is gone as ABANDONED (this and other organizations); how many.

    A live run holds its organization's advisory lock (:func:`run_lock`) for as long as it runs. The
    caller holds ``organization_id``'s, so its RUNNING rows are stale; another organization's are stale when
    its lock can be taken now, and they are marked while this connection holds it (a run starting meanwhile
    waits for it, and inserts its own row after).

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        The caller's organization, whose lock the caller holds.

    Returns
    -------
    int
        The number of ``EngineRun`` rows marked ABANDONED, every organization included.
    """
    marked = _abandon(conn, organization_id)
    others = conn.execute(
        """SELECT DISTINCT "organizationId" FROM "EngineRun" WHERE status = 'RUNNING' AND "organizationId" <> %s""",
        (organization_id,),
    ).fetchall()
    for (other,) in others:
        key = f"optiq-engine-run:{other}"
        (free,) = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
        if free:
            try:
                marked += _abandon(conn, other)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    return marked


def _abandon(conn: Any, organization_id: str) -> int:
    """ABANDONED for the organization's RUNNING runs (call with its lock held)."""
    rows = conn.execute(
        """UPDATE "EngineRun" SET status = 'ABANDONED', "finishedAt" = now(), "updatedAt" = now(),
           summary = summary || jsonb_build_object('error', 'abandoned: its process ended without finishing it '
                                                   || '(found by a later run, the organization lock free)')
           WHERE "organizationId" = %s AND status = 'RUNNING' RETURNING id""",
        (organization_id,),
    ).fetchall()
    if rows:
        log.warning(
            "marked %d run(s) of %s left RUNNING by a process that is gone as ABANDONED: %s",
            len(rows),
            organization_id,
            ", ".join(r[0] for r in rows),
        )
    return len(rows)


def campaigns_changed(conn: Any, organization_id: str, site_id: str | None) -> bool:
    """Whether a ``Campaign`` or ``Ad`` of the organization was created after the scope's last successful run
    started: touchpoints extracted before then may resolve to it now (docs/touchpoints.md §4: ad platforms
    are often synced after the clicks arrive), which no tracking event's change shows. Creation only: a
    daily sync that rewrites every row (``updatedAt``) would make every run a full one, and a row's
    ``externalId`` is the platform's id, which does not change.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id, site_id
        The scope, as :func:`previous_snapshot`.

    Returns
    -------
    bool
        True also when there is no such run (a full run follows anyway).
    """
    row = conn.execute(
        """WITH last AS (SELECT max(watermark) AS at FROM "EngineRun" WHERE "organizationId" = %(org)s
             AND status = 'SUCCEEDED' AND "siteId" IS NOT DISTINCT FROM %(site)s)
           SELECT (SELECT at FROM last) IS NULL
             OR EXISTS (SELECT 1 FROM "Campaign", last WHERE "organizationId" = %(org)s AND "createdAt" > last.at)
             OR EXISTS (SELECT 1 FROM "Ad", last WHERE "organizationId" = %(org)s AND "createdAt" > last.at)""",
        {"org": organization_id, "site": site_id},
    ).fetchone()
    return bool(row[0])


def previous_fingerprint(conn: Any, organization_id: str, site_id: str | None) -> str | None:
    """The settings fingerprint of the scope's last successful run (``summary.settingsFingerprint``; None for
    a run that predates it, so the next run recomputes in full once).

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id, site_id
        The scope, as :func:`previous_snapshot`.

    Returns
    -------
    str or None
    """
    return _last_summary(conn, organization_id, site_id, "settingsFingerprint")


def _last_summary(conn: Any, organization_id: str, site_id: str | None, key: str) -> str | None:
    """``summary->>key`` of the scope's last successful run (None: no such run, or no such key)."""
    row = conn.execute(
        """SELECT summary->>%s FROM "EngineRun" WHERE "organizationId" = %s AND status = 'SUCCEEDED'
           AND "siteId" IS NOT DISTINCT FROM %s ORDER BY watermark DESC NULLS LAST LIMIT 1""",
        (key, organization_id, site_id),
    ).fetchone()
    return row[0] if row else None


def previous_snapshot(conn: Any, organization_id: str, site_id: str | None) -> str | None:
    """The change-log snapshot of the scope's last successful run; ``None``: none, or it predates the log, or
    a change since then is tied to no organization (a ``TRUNCATE``, a deleted site): run in full.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id``.
    site_id
        The run's site, or None: runs of the whole organization (the scope must match exactly).

    Returns
    -------
    str or None
        The ``pg_snapshot`` text of that run's ``summary.changeSnapshot``; None also when the change log
        table is missing (a warning is logged).
    """
    snapshot = _last_summary(conn, organization_id, site_id, "changeSnapshot")
    if snapshot is None:
        return None
    (log_table,) = conn.execute("""SELECT to_regclass('"EngineChange"') IS NOT NULL""").fetchone()
    if not log_table:
        log.warning(
            'no change log ("EngineChange", migration 0008: the database was stamped, not migrated): every run is '
            "a full run; add it with optiq db downgrade 0007 && optiq db upgrade"
        )
        return None
    (untied,) = conn.execute(
        f"""SELECT EXISTS (SELECT 1 FROM "EngineChange" c WHERE c."organizationId" IS NULL AND {_UNSEEN})""",
        {"snapshot": snapshot},
    ).fetchone()
    if untied:
        log.warning("a TRUNCATE or a deleted tracking site since the last run: this run is a full run")
        return None
    return str(snapshot)


#: Changes of transactions a snapshot did not see (``%(snapshot)s``); the index on (organizationId, xid)
#: finds them from the snapshot's xmin.
_UNSEEN = """c.xid >= pg_snapshot_xmin(%(snapshot)s::pg_snapshot)::text::bigint
             AND NOT pg_visible_in_snapshot(c.xid::text::xid8, %(snapshot)s::pg_snapshot)"""


def changed_users(conn: Any, organization_id: str, site_id: str | None, snapshot: str) -> pl.DataFrame:
    """Users with changes the ``snapshot`` did not see (``anon_id``) and the earliest ``occurredAt`` of those
    changes, old or new (``changed_from``): a change can alter the links of the user's conversions at or
    after it only (a conversion's links see the touchpoints of its lookback and the earlier conversions).

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id``.
    site_id
        Only the changes of this site; None: of the whole organization.
    snapshot
        The previous run's change-log snapshot (:func:`previous_snapshot`).

    Returns
    -------
    polars.DataFrame
        ``anon_id`` (String), ``changed_from`` (``Datetime("us", "UTC")``), one row per user.
    """
    rows = conn.execute(
        f"""SELECT c."anonId", min(c."occurredAt") FROM "EngineChange" c
            WHERE c."organizationId" = %(org)s AND {_UNSEEN} AND c."anonId" IS NOT NULL
              AND (%(site)s::text IS NULL OR c."siteId" = %(site)s)
            GROUP BY 1""",
        {"org": organization_id, "site": site_id, "snapshot": snapshot},
    ).fetchall()
    return pl.DataFrame(rows, schema={"anon_id": pl.String, "changed_from": pl.Datetime("us", "UTC")}, orient="row")


def journey_users(conn: Any, organization_id: str) -> tuple[str, ...]:
    """Every user with a stored journey in the organization (an index-only scan).

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id``.

    Returns
    -------
    tuple of str
        The distinct ``Journey.anonId`` values, in no particular order.
    """
    rows = conn.execute('SELECT DISTINCT "anonId" FROM "Journey" WHERE "organizationId" = %s', (organization_id,))
    return tuple(r[0] for r in rows.fetchall())


def prune_changes(conn: Any, organization_id: str) -> None:
    """Delete the organization's changes that the last successful run of each of its scopes has seen.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id``.
    """
    conn.execute(
        """DELETE FROM "EngineChange" c WHERE c."organizationId" = %(org)s AND c.xid < (
             SELECT min(pg_snapshot_xmin((r.summary->>'changeSnapshot')::pg_snapshot)::text::bigint) FROM (
               SELECT DISTINCT ON ("siteId") summary FROM "EngineRun"
               WHERE "organizationId" = %(org)s AND status = 'SUCCEEDED' ORDER BY "siteId", watermark DESC NULLS LAST
             ) r)""",
        {"org": organization_id},
    )


def start_snapshot(conn: Any) -> tuple[datetime, str]:
    """The run's watermark (its transaction's start) and the change-log snapshot the next incremental run
    reads past (``pg_current_snapshot()``); taken before any read of the run.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).

    Returns
    -------
    watermark : datetime.datetime
        ``transaction_timestamp()`` (timezone-aware, UTC offset as the server returns it).
    snapshot : str
        ``pg_current_snapshot()`` as text.
    """
    (watermark, snapshot) = conn.execute("SELECT transaction_timestamp(), pg_current_snapshot()::text").fetchone()
    return watermark, snapshot


def start_run(conn: Any, run_id: str, *, organization_id: str, site_id: str | None, mode: str) -> None:
    """The run's ``EngineRun`` row, RUNNING.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    run_id
        The new row's id (:attr:`optiq_engine.batch.Plan.run_id`).
    organization_id, site_id
        The run's scope (``site_id`` None: the whole organization).
    mode
        ``"FULL"`` or ``"INCREMENTAL"``.
    """
    conn.execute(
        """INSERT INTO "EngineRun" (id, "organizationId", "siteId", mode, status) VALUES (%s, %s, %s, %s, 'RUNNING')""",
        (run_id, organization_id, site_id, mode),
    )


def finish_run(conn: Any, run_id: str, *, watermark: datetime, summary: dict[str, Any]) -> None:
    """The run SUCCEEDED: its watermark and summary (``RunSummary.as_json``) stored.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    run_id
        The run's ``EngineRun.id``.
    watermark
        The run's watermark (:func:`start_snapshot`).
    summary
        The JSON summary, stored as ``jsonb`` (it holds ``changeSnapshot`` for the next incremental run).
    """
    conn.execute(
        """UPDATE "EngineRun" SET status = 'SUCCEEDED', "finishedAt" = now(), watermark = %s,
           summary = %s::jsonb, "updatedAt" = now() WHERE id = %s""",
        (watermark, json.dumps(summary), run_id),
    )


def fail_run(conn: Any, run_id: str, exc: BaseException) -> None:
    """The run FAILED: the error (its class and message) stored as the summary.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    run_id
        The run's ``EngineRun.id``.
    exc
        The error that ended the run (an :class:`~optiq_engine._interrupt.Interrupted` too).
    """
    conn.execute(
        """UPDATE "EngineRun" SET status = 'FAILED', "finishedAt" = now(), summary = %s::jsonb,
           "updatedAt" = now() WHERE id = %s""",
        (json.dumps({"error": f"{type(exc).__name__}: {exc}"}), run_id),
    )


def extracted_last_time(conn: Any, organization_id: str) -> bool:
    """Whether the organization's last successful run extracted its touchpoints (docs/touchpoints.md §6).

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id`` (its last SUCCEEDED run by ``finishedAt``, whatever its site).

    Returns
    -------
    bool
        False when there is no such run.
    """
    row = conn.execute(
        """SELECT coalesce((summary->>'touchpoints_extracted')::boolean, false) FROM "EngineRun"
           WHERE "organizationId" = %s AND status = 'SUCCEEDED' ORDER BY "finishedAt" DESC LIMIT 1""",
        (organization_id,),
    ).fetchone()
    return bool(row is not None and row[0])


def scope_has_only_events(conn: Any, organization_id: str, site_id: str | None) -> bool:
    """Whether the scope (organization, or one of its sites) has tracking events and no ``TouchPoint`` row.

    Parameters
    ----------
    conn
        The run's psycopg connection (the one holding :func:`run_lock`).
    organization_id
        ``Organization.id``.
    site_id
        One of its sites, or None: every site.

    Returns
    -------
    bool
    """
    scope = """FROM {table} x JOIN "TrackingSite" s ON s.id = x."siteId"
               WHERE s."organizationId" = %(org)s AND (%(site)s::text IS NULL OR s.id = %(site)s)"""
    (touchpoints, events) = conn.execute(
        f"""SELECT EXISTS (SELECT 1 {scope.format(table='"TouchPoint"')}),
                   EXISTS (SELECT 1 {scope.format(table='"TrackingEvent"')})""",
        {"org": organization_id, "site": site_id},
    ).fetchone()
    return bool(events and not touchpoints)
