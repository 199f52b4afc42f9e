"""The nightly batch job: load -> attribute -> journeys -> write, for one organization, against Postgres.

``run_batch`` (and ``optiq run``) takes a per-organization advisory lock, reads the organization's
attribution settings, recomputes either everything (``full=True``) or only the users with events created
since the last successful run (the watermark in ``"EngineRun"``), and merges the links, journeys and
journey events in one transaction.

Which users an incremental run recomputes comes from the change log ``"EngineChange"`` (migration 0008):
triggers on ``TrackingEvent`` and ``TouchPoint`` add a row for every inserted, updated (old and new
version) and deleted row, with its organization, site, ``anonId``, ``occurredAt`` and writing transaction.
Each run records the snapshot it started in (``pg_current_snapshot()``, ``"EngineRun".summary->>'changeSnapshot'``);
the next incremental run of the same scope (organization, ``--site``) reads the changes of the transactions
that snapshot did not see, whatever their ``createdAt``: back-dated inserts, ``occurredAt`` or ``anonId``
updated in place, deletes, and transactions that commit late are all seen. The users named (both users of
an ``anonId`` change) are recomputed: their journeys and touchpoints over their whole history, their links
for the conversions at or after the earliest instant changed (old or new ``occurredAt``; a conversion's
links see only earlier rows). So an incremental run writes what a full run would (tested by a property
test: ``tests/test_incremental_property.py``). A run falls back to a full run when the previous run of its
scope has no snapshot (it ran before migration 0008), or a change cannot be tied to an organization (a
``TRUNCATE``, a deleted tracking site). The engine's own touchpoints are not logged; changes every scope of
the organization has read are pruned after each run.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import polars as pl

from ._interrupt import checkpoint
from .config import AttributionConfig
from .conversion_types import attribute_by_name
from .errors import ConfigError, OptiqError
from .identity import with_user_ids
from .io import postgres, rollup
from .journeys import build_journeys
from .models.fitted import data_driven_names
from .pipeline import run_attribution

__all__ = ["RunSummary", "RunLocked", "conversion_settings", "run_batch", "settings_from_json"]

log = logging.getLogger(__name__)

#: Kept for callers of ``run_batch(overlap=...)``; unused since incremental runs read the change log.
WATERMARK_OVERLAP = timedelta(minutes=10)


class RunLocked(OptiqError, RuntimeError):
    """Another run for the same organization holds the lock."""


@dataclass
class RunSummary:
    """What one batch run did."""

    run_id: str
    organization_id: str
    mode: str
    users: int | None = None
    touchpoints: int = 0
    conversions: int = 0
    links: int = 0
    unattributed: int = 0
    #: Per data-driven model, the conversions in scope it credits to no channel (baseline conversions:
    #: no links for that model, docs/data_driven.md §5), on top of ``unattributed`` (no model credits them).
    baseline_conversions: dict[str, int] = field(default_factory=dict)
    #: With ``by="name"``: the conversions in scope per conversion type (``(no name)``: null or blank name).
    conversion_types: dict[str, int] = field(default_factory=dict)
    journeys: int = 0
    journeys_changed: int = 0
    touchpoints_changed: int = 0
    touchpoints_extracted: bool = False
    change_snapshot: str | None = None
    stale_links_deleted: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    #: With ``identity="stitched"``: ``IdentityStitch``'s counts (anon ids merged into persons, docs/contract.md §1.5).
    identity: dict[str, int] | None = None

    @property
    def changed(self) -> int:
        """Rows the run inserted, updated or deleted."""
        return self.inserted + self.updated + self.deleted

    def as_json(self) -> dict[str, Any]:
        """The summary stored in ``"EngineRun".summary`` (the change-log snapshot as ``changeSnapshot``)."""
        stored = {k: v for k, v in self.__dict__.items() if k not in ("run_id", "organization_id", "change_snapshot")}
        return {**stored, "changeSnapshot": self.change_snapshot}


_SETTING_FIELDS = {
    "lookbackDays": ("lookback", lambda v: timedelta(days=float(v))),
    "halfLifeDays": ("half_life", lambda v: timedelta(days=float(v))),
    "resetAfterConversion": ("reset_after_conversion", bool),
    "positionFirst": ("position_first", float),
    "positionLast": ("position_last", float),
    "directChannels": ("direct_channels", tuple),
    "touchRule": ("touch_rule", str),
    "dropDirect": ("drop_direct", str),
    "maxTouchpoints": ("max_touchpoints", lambda v: v),  # null: no cap; AttributionConfig checks the rest
    "identity": ("identity", str),  # "stitched": anon ids joined by a user id (docs/contract.md §1.5)
    "identityKey": ("identity_key", str),  # the key of TrackingEvent.properties holding the user id
    "experiments": ("experiments", lambda v: _experiments(v)),
}


def _experiments(value: Any) -> tuple[Any, ...]:
    """``attributionSettings.experiments``: lift tests for DATA_DRIVEN (a list of objects)."""
    from .experiments import experiments_from_json

    return experiments_from_json(value)


def settings_from_json(settings: dict[str, Any] | None) -> tuple[dict[str, Any], list[str] | None]:
    """Config options and model names from ``OrganizationSettings.attributionSettings``.

    Recognised keys: ``lookbackDays``, ``halfLifeDays``, ``resetAfterConversion``, ``positionFirst``,
    ``positionLast``, ``directChannels``, ``touchRule``, ``dropDirect``, ``maxTouchpoints`` (the heuristic
    models' path rules, docs/attribution.md "Path rules"), ``experiments`` (lift tests calibrating DATA_DRIVEN: objects with
    ``channel``, ``incremental_conversions``, ``std_error``, ``start``, ``end``) and ``models`` (enum names);
    ``by`` and ``conversionTypes`` are read by :func:`conversion_settings`; others are ignored with a warning.
    """
    options: dict[str, Any] = {}
    models = None
    for key, value in (settings or {}).items():
        if key in _CONVERSION_KEYS:
            continue
        if key == "models":
            models = [str(m) for m in value] if value else None
        elif key in _SETTING_FIELDS:
            name, convert = _SETTING_FIELDS[key]
            try:
                options[name] = convert(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"attributionSettings.{key}: cannot use {value!r}: {exc}") from None
        else:
            log.warning("ignoring unknown attributionSettings key %r", key)
    return options, models


#: ``attributionSettings`` keys of credit per conversion type (:func:`conversion_settings`).
_CONVERSION_KEYS = ("by", "conversionTypes")


def conversion_settings(settings: dict[str, Any] | None) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """``by`` and the per-name options of ``attributionSettings`` (docs/attribution.md "Conversion types").

    ``{"by": "name", "conversionTypes": {"purchase": {"lookbackDays": 90, "models": ["LAST_TOUCH"]}}}``
    attributes each conversion name on its own (``attribute(by="name")``), a name's object overriding the
    organization's keys for that name: the keys of :func:`settings_from_json` (camelCase, the same
    conversions) and ``models``. Returns ``(by, {name: options})``, the options as ``attribute``'s
    ``conversion_types`` takes them (``lookback=timedelta(days=90)``, ``models=[...]``).

    Raises
    ------
    ConfigError
        ``by`` other than ``"name"``, ``conversionTypes`` without it or not an object of objects, a key of
        a name's object that is not one of those, or a value that cannot be converted.
    """
    settings = settings or {}
    by = settings.get("by")
    if by is not None and by != "name":
        raise ConfigError(f"attributionSettings.by: cannot use {by!r}; \"name\" attributes each conversion type on its own")
    types = settings.get("conversionTypes")
    if types is None:
        return by, {}
    if by is None:
        raise ConfigError('attributionSettings.conversionTypes needs "by": "name" (one attribution per conversion type)')
    if not isinstance(types, dict) or not all(isinstance(v, dict) for v in types.values()):
        raise ConfigError(f"attributionSettings.conversionTypes must map names to objects of settings, got {types!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, keys in types.items():
        unknown = sorted(set(keys) - set(_SETTING_FIELDS) - {"models"})
        if unknown:
            raise ConfigError(
                f"attributionSettings.conversionTypes.{name}: unknown key(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted({*_SETTING_FIELDS, 'models'}))}"
            )
        options, models = settings_from_json(keys)
        out[name] = {**options, **({"models": models} if models else {})}
    return by, out


def _count_types(counts: dict[str, int], conversions: pl.DataFrame) -> None:
    """Add the conversions per type (docs/attribution.md "Conversion types") to ``counts``, in name order."""
    from .conversion_types import conversion_names

    names = conversion_names(conversions).fill_null("(no name)").value_counts(sort=False)
    for name, n in names.iter_rows():
        counts[name] = counts.get(name, 0) + n
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] == "(no name)", kv[0]))
    counts.clear()
    counts.update(ordered)


def _longest_lookback(config: AttributionConfig, models: Sequence[str] | None, by: str | None, per_name: Any) -> timedelta:
    """The lookback the reads must cover: the longest of every conversion type's (a type's may be longer)."""
    from .conversion_types import type_configs

    types = type_configs(config, models, per_name).values() if by is not None else ()
    return max([config.lookback, *(cfg.lookback for cfg, _ in types)])


def _all_model_names(models: Sequence[str] | None, config: AttributionConfig, by: str | None, per_name: Any) -> list[str]:
    """The names of the models of every conversion type (the call's, then each type's new ones)."""
    from .conversion_types import type_configs
    from .models import HEURISTIC_MODELS
    from .models.base import resolve_models

    names = [m.name for m in resolve_models(models, config, default=HEURISTIC_MODELS)]
    if by is not None:
        for cfg, type_models in type_configs(config, models, per_name).values():
            names += [m.name for m in resolve_models(type_models, cfg, default=HEURISTIC_MODELS) if m.name not in names]
    return names


@contextmanager
def _org_lock(url: str, organization_id: str, *, wait: bool) -> Iterator[Any]:
    """A session-level advisory lock on the organization, held for the whole run (and its connection)."""
    import psycopg

    with psycopg.connect(postgres.adbc_url(url), autocommit=True) as conn:
        key = f"optiq-engine-run:{organization_id}"
        if wait:
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        else:
            (ok,) = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()  # type: ignore[misc]
            if not ok:
                raise RunLocked(f"another run for organization {organization_id!r} is in progress; retry later or pass --wait")
        try:
            yield conn
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def _compact_summaries(conn: Any) -> None:
    """Rebuild the summaries' indexes (a rewrite leaves them about twice their size, half-empty pages from
    the deleted rows and from sorted runs inserted mid-index) and vacuum them (pages all-visible: reports
    then read the indexes alone). ``REINDEX CONCURRENTLY`` blocks no reader or writer; a role that does not
    own the tables is told so in the log and the summaries stay as they are, correct but slower to read."""
    import psycopg

    try:
        for table in ("EngineCreditDaily", "EngineSpendDaily"):
            conn.execute(f'REINDEX TABLE CONCURRENTLY "{table}"')
        conn.execute('VACUUM (ANALYZE) "EngineCreditDaily", "EngineSpendDaily"')
    except psycopg.errors.InsufficientPrivilege as exc:
        log.warning("summaries not compacted (the tables' owner can: REINDEX, VACUUM): %s", exc)


def summarize(url: str, organization_id: str, *, wait: bool = True) -> tuple[int, float]:
    """Rebuild the organization's daily summaries (credit and spend) from its links and daily metric rows.

    For a database whose links were written by something else than the engine (the service reads an
    organization's links until it is summarized), or after touchpoints were re-resolved to other ads. Holds
    the organization's run lock, so it never interleaves with ``optiq run``; then compacts and vacuums the summaries
    (:func:`_compact_summaries`). Returns (credit rows, seconds).
    """
    t0 = time.perf_counter()
    with _org_lock(url, organization_id, wait=wait) as conn:
        _check_org(conn, organization_id)
        with conn.transaction(), conn.cursor() as cur:
            rows = rollup.rebuild_credit(cur, organization_id, repair=True)
            rollup.rebuild_spend(cur, organization_id)
        _compact_summaries(conn)
    return rows, time.perf_counter() - t0


def _check_org(conn: Any, organization_id: str) -> dict[str, Any]:
    row = conn.execute(
        """SELECT o.id, st."attributionSettings" FROM "Organization" o
           LEFT JOIN "OrganizationSettings" st ON st."organizationId" = o.id WHERE o.id = %s""",
        (organization_id,),
    ).fetchone()
    if row is None:
        raise ConfigError(f"no organization {organization_id!r} in the database")
    return row[1] or {}


def _check_site(conn: Any, organization_id: str, site_id: str | None) -> None:
    """A ``--site`` must be a tracking site of the organization (it would read nothing and succeed)."""
    if site_id is None:
        return
    row = conn.execute('SELECT "organizationId" FROM "TrackingSite" WHERE id = %s', (site_id,)).fetchone()
    if row is None or row[0] != organization_id:
        whose = "no tracking site" if row is None else "a tracking site of another organization"
        raise ConfigError(
            f"site {site_id!r} is {whose}, not of organization {organization_id!r}: nothing was run. "
            'Name one of its sites (SELECT id FROM "TrackingSite" WHERE "organizationId" = ...), or omit --site'
        )


def _mark_abandoned(conn: Any, organization_id: str) -> int:
    """Mark runs left RUNNING by a process that is gone as ABANDONED (this and other organizations); how many.

    A live run holds its organization's advisory lock (:func:`_org_lock`) for as long as it runs. The
    caller holds ``organization_id``'s, so its RUNNING rows are stale; another organization's are stale when
    its lock can be taken now, and they are marked while this connection holds it (a run starting meanwhile
    waits for it, and inserts its own row after).
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
        log.warning("marked %d run(s) of %s left RUNNING by a process that is gone as ABANDONED: %s",
                    len(rows), organization_id, ", ".join(r[0] for r in rows))  # fmt: skip
    return len(rows)


def _previous_snapshot(conn: Any, organization_id: str, site_id: str | None) -> str | None:
    """The change-log snapshot of the scope's last successful run; ``None``: none, or it predates the log, or
    a change since then is tied to no organization (a ``TRUNCATE``, a deleted site): run in full."""
    row = conn.execute(
        """SELECT summary->>'changeSnapshot' FROM "EngineRun" WHERE "organizationId" = %s AND status = 'SUCCEEDED'
           AND "siteId" IS NOT DISTINCT FROM %s ORDER BY watermark DESC NULLS LAST LIMIT 1""",
        (organization_id, site_id),
    ).fetchone()
    snapshot = row[0] if row else None
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


def _changed_users(conn: Any, organization_id: str, site_id: str | None, snapshot: str) -> pl.DataFrame:
    """Users with changes the ``snapshot`` did not see (``anon_id``) and the earliest ``occurredAt`` of those
    changes, old or new (``changed_from``): a change can alter the links of the user's conversions at or
    after it only (a conversion's links see the touchpoints of its lookback and the earlier conversions)."""
    rows = conn.execute(
        f"""SELECT c."anonId", min(c."occurredAt") FROM "EngineChange" c
            WHERE c."organizationId" = %(org)s AND {_UNSEEN} AND c."anonId" IS NOT NULL
              AND (%(site)s::text IS NULL OR c."siteId" = %(site)s)
            GROUP BY 1""",
        {"org": organization_id, "site": site_id, "snapshot": snapshot},
    ).fetchall()
    return pl.DataFrame(rows, schema={"anon_id": pl.String, "changed_from": pl.Datetime("us", "UTC")}, orient="row")


def _journey_users(conn: Any, organization_id: str) -> tuple[str, ...]:
    """Every user with a stored journey in the organization (an index-only scan)."""
    rows = conn.execute('SELECT DISTINCT "anonId" FROM "Journey" WHERE "organizationId" = %s', (organization_id,))
    return tuple(r[0] for r in rows.fetchall())


def _prune_changes(conn: Any, organization_id: str) -> None:
    """Delete the organization's changes that the last successful run of each of its scopes has seen."""
    conn.execute(
        """DELETE FROM "EngineChange" c WHERE c."organizationId" = %(org)s AND c.xid < (
             SELECT min(pg_snapshot_xmin((r.summary->>'changeSnapshot')::pg_snapshot)::text::bigint) FROM (
               SELECT DISTINCT ON ("siteId") summary FROM "EngineRun"
               WHERE "organizationId" = %(org)s AND status = 'SUCCEEDED' ORDER BY "siteId", watermark DESC NULLS LAST
             ) r)""",
        {"org": organization_id},
    )


def _in_background(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    """``fn(*args, **kwargs)`` started in a thread of its own; its result (or error) from the future."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)


def run_batch(
    url: str,
    *,
    organization_id: str,
    site_id: str | None = None,
    full: bool = False,
    since: datetime | None = None,
    models: Sequence[str] | None = None,
    partitions: int = 1,
    wait: bool = False,
    overlap: timedelta = WATERMARK_OVERLAP,
    on_stage: Callable[[str], None] | None = None,
    extract_touchpoints: bool | None = None,
    engine: str = "local",
    master: str | None = None,
    by: str | None = None,
    **options: Any,
) -> RunSummary:
    """Recompute and write the attribution links of one organization.

    Parameters
    ----------
    url
        PostgreSQL URL of an Optiq database at the current schema revision.
    full
        Recompute every user (from ``since``, if given). Otherwise only the users the change log names
        (rows inserted, updated or deleted since the last successful run of the scope, whatever their
        ``createdAt``; see the module docstring) are recomputed: their journeys over their whole history,
        their links for the conversions at or after the earliest instant changed (earlier conversions cannot
        see it; all of them when touchpoints are extracted). A first run is a full run.
    since
        With ``full``: conversions from this instant on are recomputed (earlier ones are context only).
    models, options
        Override the organization's ``attributionSettings`` (models; ``AttributionConfig`` fields).
        Data-driven models (MARKOV, SHAPLEY, DATA_DRIVEN) are fitted on every journey of the window, so a
        run that includes one is always a full run, in one part.
    partitions
        Load users in this many slices (by a hash of ``anonId``) to bound the memory of the load.
    wait
        Wait for a concurrent run of the same organization instead of raising :class:`RunLocked`.
    overlap
        Unused (kept for callers): incremental runs read the change log, not ``createdAt`` past a watermark.
    extract_touchpoints
        Build the touchpoints from the tracking events (``docs/touchpoints.md``) instead of reading the
        ``TouchPoint`` rows the platform wrote: they are merged into ``TouchPoint`` (engine rows only) in the
        same transaction as the links and journeys, and attribution uses them. Needs ``partitions=1``.
        ``None`` (default): extract when the organization's last successful run did, or when it has
        tracking events but no ``TouchPoint`` row (in scope); otherwise read the ``TouchPoint`` rows
        (``docs/touchpoints.md`` §6). ``False``: always read them.
    engine
        ``local`` (this process) or ``spark``: load (Spark's JDBC source, split by a hash of ``anonId``),
        attribution and journeys run on Spark (``master``; default ``local[*]``; ``partitions`` is the Spark
        partition count, data-driven models included); the results are collected to the driver as Arrow and
        written exactly as in ``local``: the same merges, in one transaction (``docs/spark.md``).
    by
        ``"name"``: credit per conversion type (``attribute(by="name")``), overriding ``attributionSettings.by``;
        each name's options come from ``attributionSettings.conversionTypes`` (:func:`conversion_settings`).
        A model of any type recomputes the links of that model for every conversion in scope.
    """
    if engine not in ("local", "spark"):
        raise ConfigError(f"engine must be local or spark, got {engine!r}")
    if engine == "spark" and extract_touchpoints is True:
        raise ConfigError("extract_touchpoints is not supported with engine='spark' yet")
    if extract_touchpoints is True and partitions > 1:
        raise ConfigError("extract_touchpoints loads the events of all users in scope at once: use partitions=1")
    if since is not None and not full:
        raise ConfigError("since applies to full runs only (an incremental run recomputes whole user histories)")

    def stage(name: str) -> None:
        checkpoint()  # a safe point: SIGINT/SIGTERM under optiq's handle_signals stop the run here (FAILED)
        if on_stage is not None:
            on_stage(name)

    run_id = f"run_{uuid.uuid4().hex}"
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    with _org_lock(url, organization_id, wait=wait) as conn:
        settings = _check_org(conn, organization_id)
        settings_options, settings_models = settings_from_json(settings)
        settings_by, per_name = conversion_settings(settings)
        _check_site(conn, organization_id, site_id)
        _mark_abandoned(conn, organization_id)
        if extract_touchpoints is None:
            extract_touchpoints = _extract_by_default(conn, organization_id, site_id, partitions=partitions, engine=engine)
        config = AttributionConfig().with_options(**{**settings_options, **options})
        chosen = list(models) if models else settings_models
        by = by or settings_by  # credit per conversion type (docs/attribution.md "Conversion types")
        if by is not None and engine == "spark":
            raise ConfigError("credit per conversion type (by='name') runs with engine='local' only")
        all_models = _all_model_names(chosen, config, by, per_name)
        # The change log is read past this snapshot by the next incremental run (taken before any read).
        (watermark, snapshot) = conn.execute("SELECT transaction_timestamp(), pg_current_snapshot()::text").fetchone()  # type: ignore[misc]
        # Data-driven models are fitted on every journey of the window: they need a full run in one part.
        data_driven = data_driven_names(all_models, config)
        if data_driven and partitions > 1 and engine == "local":
            raise ConfigError(f"{', '.join(data_driven)} fit on all users at once: run them with partitions=1")
        stitched = config.identity == "stitched"  # a person spans anon ids: every run restitches them all
        if stitched:
            _check_stitching(partitions, engine)
        previous = None if full or data_driven or stitched else _previous_snapshot(conn, organization_id, site_id)
        mode = "INCREMENTAL" if previous is not None else "FULL"
        summary = RunSummary(
            run_id=run_id, organization_id=organization_id, mode=mode, touchpoints_extracted=extract_touchpoints,
            change_snapshot=snapshot,
        )
        conn.execute(
            """INSERT INTO "EngineRun" (id, "organizationId", "siteId", mode, status) VALUES (%s, %s, %s, %s, 'RUNNING')""",
            (run_id, organization_id, site_id, mode),
        )
        try:
            anon_ids = changed = None
            if previous is not None:
                stage("finding changed users")
                changed = _changed_users(conn, organization_id, site_id, previous)
                anon_ids = tuple(changed.get_column("anon_id").to_list())
                summary.users = len(anon_ids)
            window = postgres.Window(
                organization_id=organization_id,
                site_id=site_id,
                start=since if full else None,
                lookback=_longest_lookback(config, chosen, by, per_name),
                anon_ids=anon_ids,
            )
            links: list[pl.DataFrame] = []
            scope: list[pl.Series] = []
            unattributed = 0
            baseline: dict[str, int] = {}
            if anon_ids != () and engine == "spark":
                # --- engine spark (optiq_engine.spark.postgres): load, attribute, journeys on Spark ---
                from .spark.postgres import attribute_postgres, postgres_session

                stage(f"starting Spark ({master or 'local[*]'})")
                t0 = time.perf_counter()
                spark = postgres_session(master or "local[*]")
                timings["spark start"] = time.perf_counter() - t0
                on_spark = attribute_postgres(
                    spark, url, window, models=chosen, config=config, as_of=watermark,
                    partitions=partitions if partitions > 1 else None, on_stage=stage,
                )  # fmt: skip
                timings.update(on_spark.timings)
                summary.touchpoints, summary.conversions = on_spark.touchpoints, on_spark.conversions
                links, scope, unattributed = [on_spark.links], [on_spark.scope], on_spark.unattributed
                baseline = dict(on_spark.baseline_conversions)
                model_names = on_spark.model_names
                extraction = None
                journeys: Any = SimpleNamespace(journeys=on_spark.journeys, journey_events=on_spark.journey_events)
                event_users = on_spark.event_users
                # --- end engine spark ---
            elif anon_ids != ():
                # --- touchpoint extraction (docs/touchpoints.md) ---
                extraction = None
                parts: Any = postgres.iter_partitions(url, window, partitions=partitions)
                if extract_touchpoints:
                    stage("extracting touchpoints")
                    t0 = time.perf_counter()
                    extraction = _extract_touchpoints(url, window, config, watermark)
                    parts = [(extraction.touchpoints, postgres.read_conversions(url, window))]
                    if extraction.quarantined.height:
                        summary.quarantined["events"] = extraction.quarantined.height
                    timings["extract touchpoints"] = time.perf_counter() - t0
                # --- end of touchpoint extraction ---
                events_ahead = None
                if extraction is None and anon_ids is not None:
                    # An incremental run's reads are index probes, bound by I/O: the events (for the journeys)
                    # are read at the same time as the touchpoints and conversions.
                    events_ahead = _in_background(postgres.read_events, url, replace(window, start=None, end=None))
                identities = postgres.read_identities(url, window, key=config.identity_key) if stitched else None
                for i, (tp, cv) in enumerate(parts):
                    stage(f"loading and attributing users (part {i + 1}/{partitions})")
                    if identities is not None:  # each anon id's latest user id (docs/contract.md §1.5)
                        tp, cv, blank_user_ids = with_user_ids(tp, cv, identities)
                    summary.touchpoints += tp.height
                    in_scope = cv if window.start is None else cv.filter(pl.col("occurred_at") >= window.start)
                    if changed is not None and extraction is None:
                        # Incremental: a user's conversions before their earliest new row keep their links
                        # (re-extracted touchpoints may differ anywhere in a user's history: all recomputed).
                        in_scope = in_scope.join(changed, on="anon_id").filter(
                            pl.col("occurred_at") >= pl.col("changed_from")
                        ).drop("changed_from")
                    summary.conversions += in_scope.height
                    if by is not None:
                        result = attribute_by_name(tp, cv, models=chosen, config=config, conversion_types=per_name,
                                                   warn_unused=anon_ids is None and partitions == 1)  # fmt: skip
                        _count_types(summary.conversion_types, in_scope)
                    else:
                        result = run_attribution(tp, cv, models=chosen, config=config)
                    if getattr(result, "identity", None) is not None:
                        summary.identity = {**result.identity.__dict__, "blank_user_ids": blank_user_ids}
                    for k, v in result.timings.items():
                        timings[k] = timings.get(k, 0.0) + v
                    for table, rows in result.quarantined.items():
                        if rows.height:
                            summary.quarantined[table] = summary.quarantined.get(table, 0) + rows.height
                    keep = in_scope.get_column("conversion_id")
                    kept = result.links.filter(pl.col("conversion_id").is_in(keep.implode()))
                    if by is not None:  # slices hold different types (and models): their enums differ
                        kept = kept.with_columns(pl.col(pl.Enum).cast(pl.String))
                    links.append(kept)
                    left = result.unattributed.filter(pl.col("conversion_id").is_in(keep.implode()))
                    unattributed += left.filter(pl.col("model").is_null()).height
                    for name, n in left.drop_nulls("model").group_by("model", maintain_order=True).len().iter_rows():
                        baseline[name] = baseline.get(name, 0) + n
                    scope.append(keep)
                    model_names = all_models if by is not None else list(result.model_names)
                    # Only the links are kept: with the inputs, the unfiltered result and the events alive
                    # through the write, a 10M-touchpoint run held 13-14 GB there (8.5 GB without them).
                    del tp, cv, in_scope, result
                stage("building journeys")
                t0 = time.perf_counter()
                # Journeys depend on a user's whole history: rebuilt from all events of the users in scope.
                if extraction is not None:  # built on the way, from the same events
                    events, journeys = extraction.events, extraction.journeys
                else:
                    events = (
                        events_ahead.result()
                        if events_ahead is not None
                        else postgres.read_events(url, replace(window, start=None, end=None))
                    )
                    journeys = build_journeys(
                        events, session_timeout=config.session_timeout, as_of=watermark, on_invalid=config.on_invalid
                    )
                if journeys.quarantined.height:
                    summary.quarantined["events"] = journeys.quarantined.height
                timings["journeys"] = time.perf_counter() - t0
                event_users = events.get_column("anon_id")
                del events
            if anon_ids != ():
                # Users whose events were all deleted (or moved to another anonId) have none left: their
                # stored journeys (and extracted touchpoints) go too. Incremental: the changed users; a full
                # run of the whole organization: every user with a stored journey.
                gone = anon_ids if anon_ids is not None else _journey_users(conn, organization_id) if site_id is None else ()
                if gone:
                    event_users = pl.concat([event_users.cast(pl.String), pl.Series("anon_id", gone, pl.String)]).unique()
                stage("writing links and journeys")
                t0 = time.perf_counter()
                conversion_ids = pl.concat(scope)
                stored = None
                if anon_ids is not None:
                    # Incremental: the stored journeys (index probes, bound by I/O) are read on other
                    # connections while the transaction merges the links (this run holds the org's lock).
                    stored = _in_background(
                        postgres.read_stored_journeys, url, journeys.journeys,
                        organization_id=organization_id, anon_ids=event_users,
                    )  # fmt: skip
                with postgres.transaction(url) as cur:  # one transaction: readers see all old or all new
                    # The service's daily credit summary follows the links: summarized anew when the scope is
                    # every conversion, or when touchpoints (what links resolve to) are rewritten too.
                    everything = mode == "FULL" and since is None and site_id is None
                    with rollup.credit_maintained(
                        cur, organization_id, conversion_ids, model_names, rebuild=everything or extraction is not None
                    ):
                        if extraction is not None:  # before the links that reference them
                            touchpoint_counts = postgres.merge_touchpoints(
                                cur, extraction.touchpoints, organization_id=organization_id,
                                anon_ids=event_users, site_id=site_id,
                            )  # fmt: skip
                            summary.touchpoints_changed = touchpoint_counts.changed
                        counts = postgres.merge_links(
                            cur,
                            pl.concat(links, how="vertical_relaxed"),
                            organization_id=organization_id,
                            conversion_ids=conversion_ids,
                            models=model_names,
                        )
                        if extraction is not None:
                            # Other models' links to touchpoints the users no longer have (the platform's
                            # rows, attributed by an earlier run that did not extract) go in this transaction.
                            summary.stale_links_deleted = postgres.delete_stale_links(
                                cur, organization_id=organization_id, models=model_names, site_id=site_id
                            )
                    checkpoint()  # inside the transaction: an interruption here rolls the links back
                    journey_counts, _ = postgres.merge_journeys(
                        cur,
                        journeys.journeys,
                        journeys.journey_events,
                        organization_id=organization_id,
                        anon_ids=event_users,
                        stored=None if stored is None else stored.result(),
                    )
                timings["write"] = time.perf_counter() - t0
                summary.links = sum(frame.height for frame in links)
                summary.unattributed = unattributed
                summary.baseline_conversions = baseline
                summary.journeys = journeys.journeys.height
                summary.inserted, summary.updated, summary.deleted = counts.inserted, counts.updated, counts.deleted
                summary.journeys_changed = journey_counts.changed
            timings["total"] = time.perf_counter() - t_all
            summary.timings = timings
            conn.execute(
                """UPDATE "EngineRun" SET status = 'SUCCEEDED', "finishedAt" = now(), watermark = %s,
                   summary = %s::jsonb, "updatedAt" = now() WHERE id = %s""",
                (watermark, json.dumps(summary.as_json()), run_id),
            )
            _prune_changes(conn, organization_id)
        except BaseException as exc:
            conn.execute(
                """UPDATE "EngineRun" SET status = 'FAILED', "finishedAt" = now(), summary = %s::jsonb,
                   "updatedAt" = now() WHERE id = %s""",
                (json.dumps({"error": f"{type(exc).__name__}: {exc}"}), run_id),
            )
            raise
    return summary


def _check_stitching(partitions: int, engine: str) -> None:
    """Identity stitching reads every user of the organization at once (a person's anon ids are never split)."""
    if engine != "local":
        raise ConfigError("identity='stitched' runs with engine='local' only (docs/contract.md §1.5)")
    if partitions > 1:
        raise ConfigError("identity='stitched' joins anon ids of any slice into one person: run it with partitions=1")


def _extract_by_default(conn: Any, organization_id: str, site_id: str | None, *, partitions: int, engine: str) -> bool:
    """Whether a run without an explicit choice extracts touchpoints (docs/touchpoints.md §6): yes when the
    organization's last successful run did (its engine rows are then kept up to date), or when the scope
    has tracking events and no ``TouchPoint`` row at all (there is nothing else to attribute to)."""
    row = conn.execute(
        """SELECT coalesce((summary->>'touchpoints_extracted')::boolean, false) FROM "EngineRun"
           WHERE "organizationId" = %s AND status = 'SUCCEEDED' ORDER BY "finishedAt" DESC LIMIT 1""",
        (organization_id,),
    ).fetchone()
    if row is not None and row[0]:
        extract = True
    else:
        scope = """FROM {table} x JOIN "TrackingSite" s ON s.id = x."siteId"
                   WHERE s."organizationId" = %(org)s AND (%(site)s::text IS NULL OR s.id = %(site)s)"""
        (touchpoints, events) = conn.execute(
            f"""SELECT EXISTS (SELECT 1 {scope.format(table='"TouchPoint"')}),
                       EXISTS (SELECT 1 {scope.format(table='"TrackingEvent"')})""",
            {"org": organization_id, "site": site_id},
        ).fetchone()
        extract = events and not touchpoints
    if extract and (partitions > 1 or engine != "local"):
        raise ConfigError(
            f"organization {organization_id!r} gets its touchpoints extracted from its tracking events (it has "
            "no TouchPoint rows, or its last run extracted them: docs/touchpoints.md §6), which needs "
            "--partitions 1 and --engine local; or pass --no-extract-touchpoints to read TouchPoint rows only"
        )
    return bool(extract)


def _extract_touchpoints(url: str, window: postgres.Window, config: AttributionConfig, as_of: datetime) -> Any:
    """Touchpoints (and journeys) of the users in scope, from their whole event history."""
    from .touchpoints import extract_touchpoints

    events = postgres.read_events_for_touchpoints(url, replace(window, start=None, end=None))
    campaigns, ads = postgres.read_campaigns(url, window.organization_id)
    return extract_touchpoints(
        events, session_timeout=config.session_timeout, campaigns=campaigns, ads=ads,
        on_invalid=config.on_invalid, as_of=as_of,
    )  # fmt: skip
