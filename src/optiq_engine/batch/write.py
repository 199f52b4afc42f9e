"""Writing a run's results: touchpoints, links and journeys merged in one transaction (:func:`write_run`)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .._interrupt import checkpoint
from ..io import postgres, rollup
from ..io.postgres import runs
from .compute import Computed, _in_background
from .plan import Plan

__all__ = ["Written", "write_run"]


@dataclass(frozen=True)
class Written:
    """What the write changed: the links' merge counts, the journeys' and the touchpoints' changes.

    Parameters
    ----------
    links
        Rows of ``"AttributionLink"`` inserted, updated and deleted.
    journeys_changed
        Journey rows inserted, updated or deleted.
    touchpoints_changed
        Extracted ``TouchPoint`` rows changed (default 0: the run read touchpoints).
    stale_links_deleted
        Links to touchpoints the users no longer have, deleted (default 0).
    """

    links: postgres.WriteCounts
    journeys_changed: int
    touchpoints_changed: int = 0
    stale_links_deleted: int = 0


def write_run(db: postgres.Connections, conn: object, plan: Plan, computed: Computed) -> Written:
    """Merge ``computed`` into the organization's rows in one transaction: readers see all old or all new.

    ``db`` is the job's connections; ``conn`` the run's locked connection (:func:`runs.run_lock`). Users whose events were all deleted (or
    moved to another ``anonId``) have none left: their stored journeys (and extracted touchpoints) go too.
    Incremental: the changed users; a full run of the whole organization: every user with a stored journey.

    Parameters
    ----------
    db
        The job's :class:`~optiq_engine.io.postgres.Connections`.
    conn
        The run's psycopg connection, holding the organization's lock.
    plan
        The run's plan, with its scope.
    computed
        What the run computed.

    Returns
    -------
    Written

    Raises
    ------
    Interrupted
        SIGINT / SIGTERM received under :func:`~optiq_engine._interrupt.handle_signals`: raised between the
        links and the journeys, inside the transaction, which rolls back.
    """
    gone = (
        plan.anon_ids
        if plan.anon_ids is not None
        else (runs.journey_users(conn, plan.organization_id) if plan.site_id is None else ())
    )
    users = computed.event_users
    if gone:
        users = pl.concat([users.cast(pl.String), pl.Series("anon_id", gone, pl.String)]).unique()
    stored = None
    if plan.anon_ids is not None:
        # Incremental: the stored journeys (index probes, bound by I/O) are read on other connections while
        # the transaction merges the links (this run holds the organization's lock).
        stored = _in_background(
            postgres.read_stored_journeys,
            db,
            computed.journeys,
            organization_id=plan.organization_id,
            anon_ids=users,
        )
    with postgres.transaction(db) as cur:
        touchpoints_changed, counts, stale = _merge_links(cur, plan, computed, users)
        checkpoint()  # inside the transaction: an interruption here rolls the links back
        journey_counts, _ = postgres.merge_journeys(
            cur,
            computed.journeys,
            computed.journey_events,
            organization_id=plan.organization_id,
            anon_ids=users,
            stored=None if stored is None else stored.result(),
        )
    return Written(counts, journey_counts.changed, touchpoints_changed, stale)


def _merge_links(
    cur: object, plan: Plan, computed: Computed, users: pl.Series
) -> tuple[int, postgres.WriteCounts, int]:
    """Touchpoints (extracted) and links merged, the service's daily credit summary kept right: summarized
    anew when the scope is every conversion, or when touchpoints (what links resolve to) are rewritten too.
    Returns (touchpoints changed, the links' counts, stale links deleted)."""
    org = plan.organization_id
    touchpoints_changed = stale = 0
    rebuild = plan.everything or computed.touchpoints is not None
    with rollup.credit_maintained(cur, org, computed.conversion_ids, computed.model_names, rebuild=rebuild):
        if computed.touchpoints is not None:  # before the links that reference them
            touchpoints_changed = postgres.merge_touchpoints(
                cur, computed.touchpoints, organization_id=org, anon_ids=users, site_id=plan.site_id
            ).changed
        counts = postgres.merge_links(
            cur,
            computed.links,
            organization_id=org,
            conversion_ids=computed.conversion_ids,
            models=computed.model_names,
        )
        if computed.touchpoints is not None:
            # Other models' links to touchpoints the users no longer have (the platform's rows, attributed by
            # an earlier run that did not extract) go in this transaction.
            stale = postgres.delete_stale_links(
                cur, organization_id=org, models=computed.model_names, site_id=plan.site_id
            )
    return touchpoints_changed, counts, stale
