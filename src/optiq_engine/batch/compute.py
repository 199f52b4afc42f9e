"""Computing a run in this process: load -> (extract touchpoints) -> attribute -> journeys (:func:`compute_local`).

The Spark engine computes the same :class:`Computed` in :func:`optiq_engine.spark.job.compute_on_spark`;
:mod:`.write` writes either one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from ..conversion_types import attribute_by_name
from ..identity import with_user_ids
from ..io import postgres
from ..journeys import build_journeys
from ..pipeline import run_attribution
from .plan import Plan, Stage

__all__ = ["Compute", "Computed", "compute_local"]


@dataclass(frozen=True)
class Computed:
    """What a run writes, and what it counted on the way.

    ``links`` are the links of the conversions in scope (``conversion_ids``, attributed or not) for
    ``model_names``; ``journeys`` / ``journey_events`` the rebuilt journeys of ``event_users``;
    ``touchpoints`` the extracted touchpoints to merge (``None``: the run read ``TouchPoint`` rows).
    ``unattributed``: conversions no model credits; ``baseline_conversions``: per data-driven model, the
    conversions it credits to no channel (docs/data_driven.md §5).

    Parameters
    ----------
    links
        The links to merge, in the columns :func:`~optiq_engine.io.postgres.merge_links` takes.
    conversion_ids
        The conversions in scope: their links are replaced by ``links`` (their ids).
    model_names
        The models whose links the run writes.
    journeys, journey_events
        :func:`~optiq_engine.build_journeys`' frames for ``event_users``.
    event_users
        The ``anon_id`` of every event read for the journeys (one per event).
    touchpoints
        Extracted touchpoints to merge into ``TouchPoint``; None (default): the run read ``TouchPoint`` rows.
    n_touchpoints, n_conversions
        Touchpoints read and conversions in scope (default 0).
    unattributed
        Conversions in scope no model credits (default 0).
    baseline_conversions
        Per data-driven model, conversions in scope it credits to no channel (default empty).
    conversion_types
        With ``by="name"``: conversions in scope per conversion name (default empty).
    quarantined
        Rows set aside as invalid, per input (``"touchpoints"``, ``"conversions"``, ``"events"``).
    identity
        With ``identity="stitched"``: the stitch's counts (:class:`~optiq_engine.IdentityStitch` fields and
        ``blank_user_ids``); default None.
    timings
        Seconds per stage (default empty).
    """

    links: pl.DataFrame
    conversion_ids: pl.Series
    model_names: list[str]
    journeys: pl.DataFrame
    journey_events: pl.DataFrame
    event_users: pl.Series
    touchpoints: pl.DataFrame | None = None
    n_touchpoints: int = 0
    n_conversions: int = 0
    unattributed: int = 0
    baseline_conversions: dict[str, int] = field(default_factory=dict)
    conversion_types: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    identity: dict[str, int] | None = None
    timings: dict[str, float] = field(default_factory=dict)


#: How a run computes: ``compute(db, plan, stage)`` (``db``: the job's :class:`~optiq_engine.io.postgres.Connections`) (:func:`compute_local`, or Spark's ``compute_on_spark``).
Compute = Callable[[postgres.Connections, Plan, Stage], Computed]


@dataclass
class _Parts:
    """The per-slice results, added up as the slices are attributed (then frozen into :class:`Computed`)."""

    links: list[pl.DataFrame] = field(default_factory=list)
    scope: list[pl.Series] = field(default_factory=list)
    model_names: list[str] = field(default_factory=list)
    touchpoints: int = 0
    conversions: int = 0
    unattributed: int = 0
    baseline: dict[str, int] = field(default_factory=dict)
    conversion_types: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    identity: dict[str, int] | None = None
    timings: dict[str, float] = field(default_factory=dict)


def compute_local(db: postgres.Connections, plan: Plan, stage: Stage) -> Computed:
    """Load the users in ``plan``'s scope from Postgres (``db``: the job's connections) and attribute them,
    slice by slice, in this process.

    Journeys depend on a user's whole history: they are rebuilt from all events of the users in scope.
    An incremental run keeps the links of a user's conversions before their earliest change.

    Parameters
    ----------
    db
        The job's :class:`~optiq_engine.io.postgres.Connections`.
    plan
        The run's plan, with its scope (:func:`~optiq_engine.batch.plan.with_scope`: ``plan.window`` set).
    stage
        Called with each stage's name as it starts (a safe point: it may raise
        :class:`~optiq_engine._interrupt.Interrupted`).

    Returns
    -------
    Computed

    Raises
    ------
    ConfigError, ModelError, SchemaError, InputError
        From :func:`~optiq_engine.pipeline.run_attribution` (or ``attribute_by_name``),
        :func:`~optiq_engine.build_journeys` and :func:`~optiq_engine.extract_touchpoints`: invalid options,
        models, or rows with ``on_invalid="raise"``.
    """
    assert plan.window is not None, "plan_run, then with_scope"
    parts = _Parts()
    extraction = None
    slices: Any = postgres.iter_partitions(db, plan.window, partitions=plan.partitions)
    if plan.extract_touchpoints:  # docs/touchpoints.md
        stage("extracting touchpoints")
        t0 = time.perf_counter()
        extraction = _extract_touchpoints(db, plan)
        slices = [(extraction.touchpoints, postgres.read_conversions(db, plan.window))]
        if extraction.quarantined.height:
            parts.quarantined["events"] = extraction.quarantined.height
        parts.timings["extract touchpoints"] = time.perf_counter() - t0
    events_ahead = None
    if extraction is None and plan.anon_ids is not None:
        # An incremental run's reads are index probes, bound by I/O: the events (for the journeys) are
        # read at the same time as the touchpoints and conversions.
        events_ahead = _in_background(postgres.read_events, db, _whole_history(plan))
    identities = postgres.read_identities(db, plan.window, key=plan.config.identity_key) if plan.stitched else None
    for i, (tp, cv) in enumerate(slices):
        stage(f"loading and attributing users (part {i + 1}/{plan.partitions})")
        _attribute_slice(parts, plan, tp, cv, identities, recompute_all=extraction is not None)
        # Only the links are kept: with the inputs, the unfiltered result and the events alive through the
        # write, a 10M-touchpoint run held 13-14 GB there (8.5 GB without them).
        del tp, cv
    stage("building journeys")
    t0 = time.perf_counter()
    if extraction is not None:  # built on the way, from the same events
        events, journeys = extraction.events, extraction.journeys
    else:
        events = events_ahead.result() if events_ahead is not None else postgres.read_events(db, _whole_history(plan))
        journeys = build_journeys(
            events, session_timeout=plan.config.session_timeout, as_of=plan.watermark, on_invalid=plan.config.on_invalid
        )
    if journeys.quarantined.height:
        parts.quarantined["events"] = journeys.quarantined.height
    parts.timings["journeys"] = time.perf_counter() - t0
    return Computed(
        links=pl.concat(parts.links, how="vertical_relaxed"),
        conversion_ids=pl.concat(parts.scope),
        model_names=parts.model_names,
        journeys=journeys.journeys,
        journey_events=journeys.journey_events,
        event_users=events.get_column("anon_id"),
        touchpoints=None if extraction is None else extraction.touchpoints,
        n_touchpoints=parts.touchpoints,
        n_conversions=parts.conversions,
        unattributed=parts.unattributed,
        baseline_conversions=parts.baseline,
        conversion_types=parts.conversion_types,
        quarantined=parts.quarantined,
        identity=parts.identity,
        timings=parts.timings,
    )


def _attribute_slice(
    parts: _Parts, plan: Plan, tp: pl.DataFrame, cv: pl.DataFrame, identities: Any, *, recompute_all: bool
) -> None:
    """Attribute one slice of users and add its links (of the conversions in scope) and counts to ``parts``."""
    if identities is not None:  # each anon id's latest user id (docs/contract.md §1.5)
        tp, cv, blank_user_ids = with_user_ids(tp, cv, identities)
    parts.touchpoints += tp.height
    in_scope = _in_scope(cv, plan, recompute_all=recompute_all)
    parts.conversions += in_scope.height
    if plan.by is not None:
        result = attribute_by_name(
            tp,
            cv,
            models=plan.models,
            config=plan.config,
            conversion_types=plan.per_name,
            warn_unused=plan.anon_ids is None and plan.partitions == 1,
        )
        _count_types(parts.conversion_types, in_scope)
    else:
        result = run_attribution(tp, cv, models=plan.models, config=plan.config)
    if getattr(result, "identity", None) is not None:
        parts.identity = {**result.identity.__dict__, "blank_user_ids": blank_user_ids}
    for k, v in result.timings.items():
        parts.timings[k] = parts.timings.get(k, 0.0) + v
    for table, rows in result.quarantined.items():
        if rows.height:
            parts.quarantined[table] = parts.quarantined.get(table, 0) + rows.height
    keep = in_scope.get_column("conversion_id")
    kept = result.links.filter(pl.col("conversion_id").is_in(keep.implode()))
    if plan.by is not None:  # slices hold different types (and models): their enums differ
        kept = kept.with_columns(pl.col(pl.Enum).cast(pl.String))
    parts.links.append(kept)
    left = result.unattributed.filter(pl.col("conversion_id").is_in(keep.implode()))
    parts.unattributed += left.filter(pl.col("model").is_null()).height
    for name, n in left.drop_nulls("model").group_by("model", maintain_order=True).len().iter_rows():
        parts.baseline[name] = parts.baseline.get(name, 0) + n
    parts.scope.append(keep)
    parts.model_names = plan.model_names if plan.by is not None else list(result.model_names)


def _in_scope(conversions: pl.DataFrame, plan: Plan, *, recompute_all: bool) -> pl.DataFrame:
    """The conversions whose links the run rewrites: from ``since``; incremental, a user's conversions at or
    after their earliest change (re-extracted touchpoints may differ anywhere in a user's history: all)."""
    window = plan.window
    assert window is not None
    in_scope = conversions if window.start is None else conversions.filter(pl.col("occurred_at") >= window.start)
    if plan.changed is not None and not recompute_all:
        in_scope = (
            in_scope.join(plan.changed, on="anon_id")
            .filter(pl.col("occurred_at") >= pl.col("changed_from"))
            .drop("changed_from")
        )
    return in_scope


def _whole_history(plan: Plan) -> postgres.Window:
    """The window of the users in scope over all time (journeys and extraction read a user's whole history)."""
    assert plan.window is not None
    return replace(plan.window, start=None, end=None)


def _count_types(counts: dict[str, int], conversions: pl.DataFrame) -> None:
    """Add the conversions per type (docs/attribution.md "Conversion types") to ``counts``, in name order."""
    from ..conversion_types import conversion_names

    names = conversion_names(conversions).fill_null("(no name)").value_counts(sort=False)
    for name, n in names.iter_rows():
        counts[name] = counts.get(name, 0) + n
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] == "(no name)", kv[0]))
    counts.clear()
    counts.update(ordered)


def _extract_touchpoints(db: postgres.Connections, plan: Plan) -> Any:
    """Touchpoints (and journeys) of the users in scope, from their whole event history."""
    from ..touchpoints import extract_touchpoints

    events = postgres.read_events_for_touchpoints(db, _whole_history(plan))
    campaigns, ads = postgres.read_campaigns(db, plan.organization_id)
    return extract_touchpoints(
        events,
        session_timeout=plan.config.session_timeout,
        campaigns=campaigns,
        ads=ads,
        on_invalid=plan.config.on_invalid,
        as_of=plan.watermark,
    )


def _in_background(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    """``fn(*args, **kwargs)`` started in a thread of its own; its result (or error) from the future."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)
