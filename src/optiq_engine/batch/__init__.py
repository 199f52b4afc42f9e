"""The nightly batch job: plan -> compute -> write, for one organization, against Postgres.

:func:`run_batch` (:mod:`.run`) holds the organization's lock while :func:`.plan.plan_run` decides what
the run recomputes (:class:`Plan`), a :data:`Compute` computes it (:func:`compute_local` in this process,
or :func:`optiq_engine.spark.job.compute_on_spark`) as one :class:`Computed`, and :func:`.write.write_run`
merges it in one transaction; the run's bookkeeping in Postgres is :mod:`optiq_engine.io.postgres.runs`.

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
test: ``tests/batch/test_incremental_property.py``). A run falls back to a full run when the previous run of its
scope has no snapshot (it ran before migration 0008), or a change cannot be tied to an organization (a
``TRUNCATE``, a deleted tracking site). The engine's own touchpoints are not logged; changes every scope of
the organization has read are pruned after each run.
"""

from __future__ import annotations

from ..io.postgres.runs import RunLocked
from .compute import Compute, Computed, compute_local
from .plan import Plan
from .run import WATERMARK_OVERLAP, RunSummary, run_batch, summarize
from .settings import conversion_settings, settings_from_json

__all__ = [
    "Compute",
    "Computed",
    "Plan",
    "RunLocked",
    "RunSummary",
    "WATERMARK_OVERLAP",
    "compute_local",
    "conversion_settings",
    "run_batch",
    "settings_from_json",
    "summarize",
]
