"""Postgres: an organization's rows in as frames, the engine's results out, the nightly run's bookkeeping.

- :mod:`.connections`: :class:`Connections`, the pool of ADBC connections a job owns and passes down (every
  function here takes it, or a URL for a call on its own).
- :mod:`.read`: :class:`Window` (which rows), ``read_*`` (one frame) and :func:`iter_partitions` (slices by user),
  through ADBC's binary ``COPY``; every query scoped by organization.
- :mod:`.merge`: :func:`transaction` and the staged merge that replaces a scope's rows idempotently.
- :mod:`.write`: ``merge_*`` (inside the caller's transaction) and ``write_*`` (in one of their own) of
  links, journeys and extracted touchpoints.
- :mod:`.runs`: the nightly job's ``EngineRun`` rows, the organization's run lock and the change log.
"""

from __future__ import annotations

from .connections import Connections, adbc_url
from .merge import WriteCounts, transaction
from .read import (
    Window,
    hash_partition,
    iter_partitions,
    read_campaigns,
    read_conversions,
    read_events,
    read_events_for_touchpoints,
    read_identities,
    read_sql,
    read_touchpoints,
)
from .write import (
    ENGINE_TOUCHPOINT_PATTERN,
    StoredJourneys,
    delete_stale_links,
    link_rows_for_postgres,
    merge_journeys,
    merge_links,
    merge_touchpoints,
    read_stored_journeys,
    touchpoint_rows_for_postgres,
    write_journeys,
    write_links,
    write_touchpoints,
)

__all__ = [
    "Connections",
    "Window",
    "WriteCounts",
    "adbc_url",
    "read_touchpoints",
    "read_conversions",
    "read_events",
    "read_events_for_touchpoints",
    "read_identities",
    "read_identities",
    "read_campaigns",
    "ENGINE_TOUCHPOINT_PATTERN",
    "merge_touchpoints",
    "delete_stale_links",
    "write_touchpoints",
    "touchpoint_rows_for_postgres",
    "iter_partitions",
    "read_sql",
    "hash_partition",
    "link_rows_for_postgres",
    "write_links",
    "merge_links",
    "write_journeys",
    "merge_journeys",
    "read_stored_journeys",
    "StoredJourneys",
    "transaction",
]
