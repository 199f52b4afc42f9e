"""One run of the nightly job: plan -> compute -> write under the organization's lock (:func:`run_batch`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .._interrupt import checkpoint
from ..errors import ConfigError
from ..io import postgres, rollup
from ..io.postgres import runs
from .compute import Compute, Computed, compute_local
from .plan import Plan, check_arguments, plan_run, with_scope
from .write import Written, write_run

__all__ = ["RunSummary", "WATERMARK_OVERLAP", "run_batch", "summarize"]

#: Kept for callers of ``run_batch(overlap=...)``; unused since incremental runs read the change log.
WATERMARK_OVERLAP = timedelta(minutes=10)


@dataclass
class RunSummary:
    """What one batch run did.

    Made by :meth:`of`; stored as ``"EngineRun".summary`` (:meth:`as_json`).

    Parameters
    ----------
    run_id, organization_id, mode
        The run's ``EngineRun.id``, organization and mode (``"FULL"`` / ``"INCREMENTAL"``).
    users
        Users recomputed by an incremental run; None: a full run (every user in scope).
    touchpoints, conversions, links, unattributed
        Touchpoints read, conversions in scope, links written and conversions no model credits.
    baseline_conversions, conversion_types
        See the comments on the fields.
    journeys, journeys_changed, touchpoints_changed
        Journeys built, and journey / touchpoint rows the write changed.
    touchpoints_extracted
        Whether the run extracted its touchpoints from the tracking events.
    change_snapshot
        The change-log snapshot the next incremental run reads past (stored as ``changeSnapshot``).
    settings_fingerprint
        See the comment on the field.
    stale_links_deleted
        Links to touchpoints the users no longer have, deleted by a run that extracted touchpoints.
    quarantined
        Invalid rows set aside, per input.
    inserted, updated, deleted
        The links' merge counts.
    timings
        Seconds per stage, ``total`` included.
    identity
        See the comment on the field.
    """

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
    #: The options and models the run computed with (:func:`~optiq_engine.batch.plan.settings_fingerprint`):
    #: an incremental run whose settings differ runs in full (stored as ``settingsFingerprint``).
    settings_fingerprint: str | None = None
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
        skip = ("run_id", "organization_id", "change_snapshot", "settings_fingerprint")
        stored = {k: v for k, v in self.__dict__.items() if k not in skip}
        return {**stored, "changeSnapshot": self.change_snapshot, "settingsFingerprint": self.settings_fingerprint}

    @classmethod
    def of(cls, plan: Plan, computed: Computed | None, written: Written | None) -> RunSummary:
        """The summary of a run that planned ``plan``, computed ``computed`` and wrote ``written`` (both
        ``None``: nothing changed since the last run).

        Parameters
        ----------
        plan
            The run's plan (with its scope).
        computed, written
            What the run computed and wrote; either None: only the plan's fields are filled.

        Returns
        -------
        RunSummary
            Without ``timings`` (the caller sets them).
        """
        summary = cls(
            run_id=plan.run_id,
            organization_id=plan.organization_id,
            mode=plan.mode,
            users=None if plan.anon_ids is None else len(plan.anon_ids),
            touchpoints_extracted=plan.extract_touchpoints,
            change_snapshot=plan.snapshot,
            settings_fingerprint=plan.fingerprint,
        )
        if computed is None or written is None:
            return summary
        summary.touchpoints, summary.conversions = computed.n_touchpoints, computed.n_conversions
        summary.links, summary.unattributed = computed.links.height, computed.unattributed
        summary.baseline_conversions = dict(computed.baseline_conversions)
        summary.conversion_types = dict(computed.conversion_types)
        summary.quarantined, summary.identity = dict(computed.quarantined), computed.identity
        summary.journeys = computed.journeys.height
        counts = written.links
        summary.inserted, summary.updated, summary.deleted = counts.inserted, counts.updated, counts.deleted
        summary.journeys_changed, summary.touchpoints_changed = written.journeys_changed, written.touchpoints_changed
        summary.stale_links_deleted = written.stale_links_deleted
        return summary


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
    compute: Compute | None = None,
    **options: Any,
) -> RunSummary:
    """Recompute and write the attribution links of one organization (an error after the run's ``EngineRun``
    row is inserted records the run FAILED before it propagates).

    Parameters
    ----------
    url
        PostgreSQL URL of an Optiq database at the current schema revision.
    organization_id, site_id
        ``Organization.id`` of the organization to run; one of its tracking sites (default: every site).
    full
        Recompute every user (from ``since``, if given). Otherwise only the users the change log names (rows
        inserted, updated or deleted since the scope's last successful run; the module docstring): their
        journeys over their whole history, their links from the earliest instant changed on (all of them
        when touchpoints are extracted). A first run is a full run.
    since
        With ``full``: the conversions from this instant on are recomputed (earlier ones are context).
    models, options
        Override the organization's ``attributionSettings`` (models; ``AttributionConfig`` fields). A run
        with a data-driven model is always a full run, in one part (they fit every journey of the window).
    partitions
        Load users in this many slices (by a hash of ``anonId``) to bound the memory of the load.
    on_stage
        Called with each stage's name as it starts (``optiq run`` shows it).
    wait
        Wait for a concurrent run of the organization instead of raising :class:`RunLocked`.
    overlap
        Unused, kept for callers (incremental runs read the change log).
    extract_touchpoints
        Build the touchpoints from the tracking events (``docs/touchpoints.md``) and merge them into
        ``TouchPoint`` (engine rows only) in the links' transaction, instead of reading the platform's rows;
        needs ``partitions=1``. ``None`` (default): extract when the last successful run did, or when the
        scope has tracking events and no ``TouchPoint`` row (``docs/touchpoints.md`` §6).
    engine, master, compute
        ``"local"``: computed in this process (:func:`compute_local`, the default ``compute``). ``"spark"``:
        with ``compute=optiq_engine.spark.job.compute_on_spark`` (as ``optiq run --engine spark`` passes),
        load, attribution and journeys run on Spark at ``master`` (default ``local[*]``; ``partitions``: the
        Spark partition count); the results are collected as Arrow and written exactly as a local run's,
        in one transaction (``docs/spark.md``).
    by
        ``"name"``: credit per conversion type (``attribute(by="name")``), overriding ``attributionSettings.by``;
        each name's options come from ``attributionSettings.conversionTypes`` (:func:`conversion_settings`).
        A model of any type recomputes the links of that model for every conversion in scope.

    Returns
    -------
    RunSummary
        What the run did; it is also stored in the run's ``EngineRun`` row (SUCCEEDED).

    Raises
    ------
    RunLocked
        Another run of the organization holds the lock and ``wait`` is False.
    ConfigError
        Contradicting options, an unknown organization or site, invalid ``attributionSettings`` or options
        (:func:`~optiq_engine.batch.plan.check_arguments`, :func:`~optiq_engine.batch.plan.plan_run`).
    ModelError, SchemaError, InputError
        From the computation (unknown models, invalid rows with ``on_invalid="raise"``).
    Interrupted
        SIGINT / SIGTERM under :func:`~optiq_engine._interrupt.handle_signals` (at a stage boundary).
    """
    check_arguments(
        engine=engine, extract_touchpoints=extract_touchpoints, partitions=partitions, full=full, since=since
    )
    compute, stage = _compute_of(engine, compute), _stages(on_stage)
    t_all = time.perf_counter()
    with runs.run_lock(url, organization_id, wait=wait) as conn, postgres.Connections(url) as db:
        plan = plan_run(
            conn,
            organization_id=organization_id,
            site_id=site_id,
            full=full,
            since=since,
            models=models,
            partitions=partitions,
            extract_touchpoints=extract_touchpoints,
            engine=engine,
            master=master,
            by=by,
            options=options,
        )
        return _recorded(conn, db, plan, compute, stage, t_all)


def _recorded(
    conn: Any, db: postgres.Connections, plan: Plan, compute: Compute, stage: Callable[[str], None], t_all: float
) -> RunSummary:
    """The run computed and written between its ``EngineRun`` row's start and finish; FAILED, with the
    error, when anything raises (the change log is pruned only after a finished run)."""
    runs.start_run(conn, plan.run_id, organization_id=plan.organization_id, site_id=plan.site_id, mode=plan.mode)
    try:
        summary = _compute_and_write(conn, db, plan, compute, stage, t_all)
        runs.finish_run(conn, plan.run_id, watermark=plan.watermark, summary=summary.as_json())
        runs.prune_changes(conn, plan.organization_id)
    except BaseException as exc:
        runs.fail_run(conn, plan.run_id, exc)
        raise
    return summary


def _compute_and_write(
    conn: Any, db: postgres.Connections, plan: Plan, compute: Compute, stage: Callable[[str], None], t_all: float
) -> RunSummary:
    """The run's scope read, computed and written (nothing when an incremental run finds no change)."""
    plan = with_scope(conn, plan, stage)
    computed = written = None
    timings: dict[str, float] = {}
    if plan.anon_ids != ():  # () : an incremental run with nothing changed
        computed = compute(db, plan, stage)
        timings.update(computed.timings)
        stage("writing links and journeys")
        t0 = time.perf_counter()
        written = write_run(db, conn, plan, computed)
        timings["write"] = time.perf_counter() - t0
    summary = RunSummary.of(plan, computed, written)
    summary.timings = {**timings, "total": time.perf_counter() - t_all}
    return summary


def _compute_of(engine: str, compute: Compute | None) -> Compute:
    """The run's compute step: the one given, else :func:`compute_local` (``engine="local"`` only)."""
    if compute is not None:
        return compute
    if engine != "local":
        raise ConfigError(
            "engine='spark' computes on Spark: pass compute=optiq_engine.spark.job.compute_on_spark "
            "(optiq run --engine spark does)"
        )
    return compute_local


def _stages(on_stage: Callable[[str], None] | None) -> Callable[[str], None]:
    """Each stage's start: a safe point (SIGINT/SIGTERM under optiq's handle_signals stop the run there,
    recorded FAILED), then ``on_stage`` (``optiq run`` shows the stage)."""

    def stage(name: str) -> None:
        checkpoint()
        if on_stage is not None:
            on_stage(name)

    return stage


def summarize(url: str, organization_id: str, *, wait: bool = True) -> tuple[int, float]:
    """Rebuild the organization's daily summaries (credit and spend) from its links and daily metric rows.

    For a database whose links were written by something else than the engine (the service reads an
    organization's links until it is summarized), or after touchpoints were re-resolved to other ads. Holds
    the organization's run lock, so it never interleaves with ``optiq run``; then compacts and vacuums the summaries
    (:func:`runs.compact_summaries`). Returns (credit rows, seconds).

    Parameters
    ----------
    url
        PostgreSQL URL of an Optiq database.
    organization_id
        ``Organization.id``.
    wait
        Wait for a run of the organization to finish (default True) instead of raising :class:`RunLocked`.

    Returns
    -------
    rows : int
        Rows of the rebuilt credit summary.
    seconds : float
        Wall-clock time of the whole call.

    Raises
    ------
    RunLocked
        ``wait=False`` and a run of the organization holds the lock.
    ConfigError
        No such organization.
    """
    t0 = time.perf_counter()
    with runs.run_lock(url, organization_id, wait=wait) as conn:
        runs.read_settings(conn, organization_id)
        with conn.transaction(), conn.cursor() as cur:
            rows = rollup.rebuild_credit(cur, organization_id, repair=True)
            rollup.rebuild_spend(cur, organization_id)
        runs.compact_summaries(conn)
    return rows, time.perf_counter() - t0
