"""Writing the engine's results to Postgres: attribution links, journeys and extracted touchpoints.

Each ``merge_*`` runs inside the caller's transaction (:func:`.merge.transaction`); each ``write_*`` is the
same in a transaction of its own. All are staged merges (:class:`.merge._Merge`): idempotent, all or nothing,
scoped by organization.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import polars as pl

from ...errors import InputError
from ..rollup import credit_maintained
from .connections import Connections, _inline, connections
from .merge import WriteCounts, _Merge, _primary_key_probes, transaction
from .read import _PROBE_CONNECTIONS, _split


def link_rows_for_postgres(links: pl.DataFrame) -> pl.DataFrame:
    """The engine's links frame as ``AttributionLink`` rows (camelCase, with deterministic ids).

    The id is ``<conversionId>:<model>:<touchPointId>``: unique and reproduced by every rerun. Merges match
    on the natural key (conversionId, touchPointId, model), so the id scheme never decides a conflict.

    Parameters
    ----------
    links
        ``AttributionResult.links`` (``conversion_id``, ``touchpoint_id``, ``model``, ``weight``, ``position``,
        ``touchpoint_count``; other columns are dropped).

    Returns
    -------
    polars.DataFrame
        ``id``, ``conversionId``, ``touchPointId``, ``model`` (String), ``weight``, ``position``,
        ``touchPointCount`` (Int32).
    """
    return links.select(
        pl.concat_str(
            [pl.col("conversion_id"), pl.col("model").cast(pl.String), pl.col("touchpoint_id")], separator=":"
        ).alias("id"),
        pl.col("conversion_id").alias("conversionId"),
        pl.col("touchpoint_id").alias("touchPointId"),
        pl.col("model").cast(pl.String).alias("model"),
        pl.col("weight"),
        pl.col("position").cast(pl.Int32),
        pl.col("touchpoint_count").cast(pl.Int32).alias("touchPointCount"),
    )


_LINKS = _Merge(
    table="AttributionLink",
    key=("conversionId", "touchPointId", "model"),
    values=("weight", "position", "touchPointCount"),
    scope_column="conversionId",
    scope_filter="t.model::text = ANY($1)",
    enums=("model",),
)

_FOREIGN_CONVERSIONS = """SELECT count(*) FROM optiq_scope_attributionlink sc
LEFT JOIN "TrackingEvent" e ON e.id = sc.id LEFT JOIN "TrackingSite" s ON s.id = e."siteId"
WHERE s."organizationId" IS DISTINCT FROM $1"""


def write_links(
    url: str | Connections,
    links: pl.DataFrame,
    *,
    organization_id: str,
    conversion_ids: pl.Series,
    models: list[str],
) -> WriteCounts:
    """Replace the ``AttributionLink`` rows of ``conversion_ids`` x ``models`` with ``links``, atomically.

    In one transaction: the scope's current links are read back and compared in memory on the natural key;
    rows that no longer exist are deleted, changed ones updated, new ones bulk-copied (binary COPY through
    ADBC) straight into the table in key order, equal ones left alone, so rerunning the same window changes
    nothing and writes nothing. Readers see the old or the new result, never a mix; a failure anywhere (a
    crash included) rolls back and leaves the previous rows intact. Concurrent writers of the same rows make
    this transaction fail (a unique violation, or a count that does not match), never mix results.

    Foreign keys: a role that may set ``session_replication_role`` (a superuser, or on PostgreSQL 15+ a role
    granted ``SET ON PARAMETER session_replication_role``) checks the new rows' references set-based, one
    join per foreign key that also locks the referenced rows ``FOR KEY SHARE`` (what Postgres' per-row
    trigger does; rows this transaction wrote itself need no lock), then inserts with the per-row triggers
    off; only when no other trigger fires on INSERT. Any other role inserts through Postgres' own per-row
    checks. A missing reference writes nothing either way.

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a connection of its own).
    links
        The engine's links (``AttributionResult.links``) of the recomputed conversions.
    organization_id
        The tenant: every conversion in scope must belong to it, or nothing is written.
    conversion_ids
        Every conversion whose links were recomputed (attributed or not): their old links of ``models``
        that the new result does not have are deleted.
    models
        The models recomputed; links of other models are not touched.

    Returns
    -------
    WriteCounts
        The links inserted, updated and deleted.

    Raises
    ------
    InputError
        A conversion in scope outside the organization (or missing), a link of a conversion not in
        ``conversion_ids``, or (set-based check) a link whose touchpoint does not exist; nothing is written.
    RuntimeError
        A concurrent writer changed the scope's rows during the merge (a count that does not match); the
        transaction rolls back.
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    with transaction(url) as cur, credit_maintained(cur, organization_id, conversion_ids, models):
        return merge_links(cur, links, organization_id=organization_id, conversion_ids=conversion_ids, models=models)


def merge_links(
    cur: Any, links: pl.DataFrame, *, organization_id: str, conversion_ids: pl.Series, models: list[str]
) -> WriteCounts:
    """:func:`write_links` inside the caller's transaction (``cur`` an ADBC cursor). The caller keeps the
    service's daily credit summary right by wrapping it in :func:`optiq_engine.io.rollup.credit_maintained`.

    Parameters
    ----------
    cur
        An ADBC cursor in the writing transaction (:func:`transaction`).
    links, organization_id, conversion_ids, models
        As :func:`write_links`.

    Returns
    -------
    WriteCounts

    Raises
    ------
    InputError
        As :func:`write_links`; the caller's transaction is to be rolled back.
    RuntimeError
        A concurrent writer changed the scope's rows during the merge (a count that does not match); the
        transaction rolls back.
    """
    rows = link_rows_for_postgres(links)
    _LINKS.stage_scope(cur, conversion_ids)
    with _primary_key_probes(cur, "TrackingEvent", conversion_ids.len()):
        cur.execute(_FOREIGN_CONVERSIONS, [organization_id])
        (foreign,) = cur.fetchone()
    if foreign:
        raise InputError(
            f"{foreign} conversion(s) in scope do not belong to organization {organization_id!r} "
            "(or do not exist); nothing was written",
            {"foreign conversion": int(foreign)},
        )
    outside = (~rows.get_column("conversionId").is_in(conversion_ids.cast(pl.String).implode())).sum()
    if outside:
        raise InputError(
            f"{outside} link(s) belong to conversions outside conversion_ids (the scope checked against the "
            "organization); nothing was written. Pass every conversion whose links are written.",
            {"link outside the scope": int(outside)},
        )
    return _LINKS.apply(cur, rows, [list(models)])


_JOURNEY_COLUMNS = {
    "journey_id": "id",
    "anon_id": "anonId",
    "session_id": "sessionId",
    "status": "status",
    "started_at": "startedAt",
    "converted_at": "convertedAt",
    "last_activity_at": "lastActivityAt",
    "conversion_value_micros": "conversionValue",
    "conversion_name": "conversionName",
    "first_utm_source": "firstUtmSource",
    "first_utm_medium": "firstUtmMedium",
    "first_utm_campaign": "firstUtmCampaign",
    "last_utm_source": "lastUtmSource",
    "last_utm_medium": "lastUtmMedium",
    "last_utm_campaign": "lastUtmCampaign",
    "touchpoint_count": "touchPointCount",
    "event_count": "eventCount",
}

_JOURNEYS = _Merge(
    table="Journey",
    key=("id",),
    values=("organizationId", *(c for c in _JOURNEY_COLUMNS.values() if c != "id")),
    scope_column="anonId",
    scope_filter='t."organizationId" = $1',
    enums=("status",),
)
_JOURNEY_EVENTS = _Merge(
    table="JourneyEvent",
    key=("journeyId", "trackingEventId"),
    values=("sequenceNumber", "occurredAt"),
    scope_column="journeyId",
)


@dataclass(frozen=True)
class StoredJourneys:
    """The stored rows that :func:`merge_journeys` compares the new journeys with (:func:`read_stored_journeys`).

    Parameters
    ----------
    journeys
        The stored ``Journey`` rows of the users in scope.
    journey_events
        The stored ``JourneyEvent`` rows of the new journeys' ids.
    """

    journeys: pl.DataFrame
    journey_events: pl.DataFrame


def read_stored_journeys(
    url: str | Connections, journeys: pl.DataFrame, *, organization_id: str, anon_ids: pl.Series
) -> StoredJourneys:
    """The ``Journey`` rows of ``anon_ids`` and the ``JourneyEvent`` rows of ``journeys`` now stored, read on
    connections of their own: to run while the writing transaction merges the links.

    For a run that holds the organization's lock (``optiq_engine.batch``), where only the engine writes these
    rows: the merge's own read would see the same rows. A row changed by some other writer in between makes
    the merge fail (a count or a unique key that does not match) or leaves that writer's values, as it would
    between the merge's read and its writes inside one transaction.

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a connection of its own).
    journeys
        The new journeys (``journey_id``): their stored events are read.
    organization_id
        ``Organization.id``.
    anon_ids
        The users in scope: their stored journeys are read.

    Returns
    -------
    StoredJourneys

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """

    def read(merge: _Merge, ids: pl.Series, params: list[Any]) -> pl.DataFrame:
        with transaction(db) as cur:
            return merge.read_scope(cur, ids, params)

    # Cold index probes: each table's read is split over connections (:func:`_split`), all read at once.
    journey_ids = journeys.get_column("journey_id")
    with connections(url) as db, ThreadPoolExecutor(max_workers=2 * _PROBE_CONNECTIONS) as pool:
        parts = [pool.submit(read, _JOURNEYS, part, [organization_id]) for part in _split(anon_ids.unique().sort())]
        events = [pool.submit(read, _JOURNEY_EVENTS, part, []) for part in _split(journey_ids.sort())]
        return StoredJourneys(
            pl.concat([part.result() for part in parts], rechunk=False),
            pl.concat([part.result() for part in events], rechunk=False),
        )


def _read_stored_journeys(
    cur: Any, journeys: pl.DataFrame, *, organization_id: str, anon_ids: pl.Series
) -> StoredJourneys:
    return StoredJourneys(
        _JOURNEYS.read_scope(cur, anon_ids, [organization_id]),
        _JOURNEY_EVENTS.read_scope(cur, journeys.get_column("journey_id"), []),
    )


def merge_journeys(
    cur: Any,
    journeys: pl.DataFrame,
    journey_events: pl.DataFrame,
    *,
    organization_id: str,
    anon_ids: pl.Series,
    stored: StoredJourneys | None = None,
) -> tuple[WriteCounts, WriteCounts]:
    """Replace the ``Journey`` / ``JourneyEvent`` rows of ``anon_ids`` inside the caller's transaction.

    Journeys of those users that the new result lacks are deleted (their events go with them); the new
    journeys' event lists are merged. ``stored``: the rows to compare with, read ahead by
    :func:`read_stored_journeys` with the same arguments (else read here). Returns the counts of both tables.

    Parameters
    ----------
    cur
        An ADBC cursor in the writing transaction (:func:`transaction`).
    journeys, journey_events
        :func:`optiq_engine.build_journeys`' frames of the users in scope.
    organization_id
        ``Organization.id`` (written into every ``Journey`` row, and the scope of the deletions).
    anon_ids
        The users whose journeys were rebuilt (users with no journey left included).
    stored
        The stored rows read ahead (default None: read here).

    Returns
    -------
    journeys, journey_events : WriteCounts

    Raises
    ------
    RuntimeError
        A concurrent writer changed the scope's rows during the merge (a count that does not match); the
        transaction rolls back.
    """
    rows = journeys.select(
        pl.lit(organization_id).alias("organizationId"),
        *(pl.col(k).alias(v) for k, v in _JOURNEY_COLUMNS.items()),
    ).with_columns(pl.col("touchPointCount", "eventCount").cast(pl.Int32))
    if stored is None:
        stored = _read_stored_journeys(cur, journeys, organization_id=organization_id, anon_ids=anon_ids)
    counts = _JOURNEYS.apply(cur, rows, [organization_id], stored.journeys)
    events = journey_events.select(
        pl.concat_str([pl.col("journey_id"), pl.col("event_id")], separator=":").alias("id"),
        pl.col("journey_id").alias("journeyId"),
        pl.col("event_id").alias("trackingEventId"),
        pl.col("sequence_number").cast(pl.Int32).alias("sequenceNumber"),
        pl.col("occurred_at").alias("occurredAt"),
    )
    return counts, _JOURNEY_EVENTS.apply(cur, events, current=stored.journey_events)


def write_journeys(
    url: str | Connections,
    journeys: pl.DataFrame,
    journey_events: pl.DataFrame,
    *,
    organization_id: str,
    anon_ids: pl.Series,
) -> tuple[WriteCounts, WriteCounts]:
    """:func:`merge_journeys` in a transaction of its own (all or nothing).

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a connection of its own).
    journeys, journey_events, organization_id, anon_ids
        As :func:`merge_journeys`.

    Returns
    -------
    journeys, journey_events : WriteCounts

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    RuntimeError
        A concurrent writer changed the scope's rows during the merge (a count that does not match); the
        transaction rolls back.
    """
    with transaction(url) as cur:
        return merge_journeys(cur, journeys, journey_events, organization_id=organization_id, anon_ids=anon_ids)


#: Ids of engine-extracted ``TouchPoint`` rows (``docs/touchpoints.md`` §5); the platform's CUIDs never match.
ENGINE_TOUCHPOINT_PATTERN = "^tp_[0-9a-f]{32}$"

_TOUCHPOINT_ROW_COLUMNS = {
    "anon_id": "anonId",
    "session_id": "sessionId",
    "occurred_at": "occurredAt",
    "gclid": "gclid",
    "fbclid": "fbclid",
    "ttclid": "ttclid",
    "utm_source": "utmSource",
    "utm_medium": "utmMedium",
    "utm_campaign": "utmCampaign",
    "platform_code": "platformCode",
    "campaign_id": "campaignId",
    "ad_id": "adId",
}

_TOUCHPOINTS = _Merge(
    table="TouchPoint",
    key=("id",),
    values=("siteId", "trackingEventId", *_TOUCHPOINT_ROW_COLUMNS.values()),
    scope_column="anonId",
    # Only engine rows, of the organization's sites (or the one site): platform rows are never deleted.
    scope_filter=(
        f"t.id ~ '{ENGINE_TOUCHPOINT_PATTERN}' AND ($2::text IS NULL OR t.\"siteId\" = $2) AND "
        't."siteId" IN (SELECT ts.id FROM "TrackingSite" ts WHERE ts."organizationId" = $1)'
    ),
    enums=("platformCode",),
    probe=False,  # anonId leads no index of TouchPoint (siteId does)
)

_FOREIGN_TOUCHPOINT_SITES = """SELECT x.site FROM unnest($3::text[]) AS x(site)
LEFT JOIN "TrackingSite" s ON s.id = x.site
WHERE s."organizationId" IS DISTINCT FROM $1 OR ($2::text IS NOT NULL AND x.site IS DISTINCT FROM $2)"""


def touchpoint_rows_for_postgres(touchpoints: pl.DataFrame, *, site_id: str | None = None) -> pl.DataFrame:
    """Extracted touchpoints as ``TouchPoint`` rows (camelCase; ``trackingEventId`` is ``event_id``).

    Parameters
    ----------
    touchpoints
        :attr:`optiq_engine.TouchpointExtraction.touchpoints`.
    site_id
        The ``siteId`` of every row when ``touchpoints`` has no ``site_id`` column (default None).

    Returns
    -------
    polars.DataFrame
        ``id``, ``siteId``, ``trackingEventId`` and the camelCase touchpoint columns.
    """
    site = pl.col("site_id") if "site_id" in touchpoints.columns else pl.lit(site_id, pl.String)
    return touchpoints.select(
        pl.col("touchpoint_id").alias("id"),
        site.alias("siteId"),
        pl.col("event_id").alias("trackingEventId"),
        *(pl.col(k).alias(v) for k, v in _TOUCHPOINT_ROW_COLUMNS.items()),
    )


def merge_touchpoints(
    cur: Any,
    touchpoints: pl.DataFrame,
    *,
    organization_id: str,
    anon_ids: pl.Series,
    site_id: str | None = None,
) -> WriteCounts:
    """Replace the engine-extracted ``TouchPoint`` rows of ``anon_ids`` inside the caller's transaction.

    Parameters
    ----------
    cur
        An ADBC cursor (:func:`transaction`); merge touchpoints before the links that reference them.
    touchpoints
        :attr:`optiq_engine.TouchpointExtraction.touchpoints` of the users in scope (``site_id`` column, or
        the ``site_id`` argument; ``event_id`` must be ``TrackingEvent.id``).
    organization_id
        The tenant: every touchpoint's site must belong to it, or nothing is written.
    anon_ids
        The users whose touchpoints were recomputed: their engine rows that the new result lacks are
        deleted (cascading to their links).
    site_id
        Restrict the scope to one tracking site (the run's ``--site``).

    Returns
    -------
    WriteCounts

    Raises
    ------
    InputError
        A touchpoint id that is not an engine id (``tp_`` + 32 hex digits), or a site outside the
        organization; nothing is written.
    RuntimeError
        A concurrent writer changed the scope's rows during the merge (a count that does not match); the
        transaction rolls back.

    Notes
    -----
    Rows whose id is not an engine id (the platform's CUIDs) are never deleted or updated
    (``docs/touchpoints.md`` §5).
    """
    ids = touchpoints.get_column("touchpoint_id")
    foreign_ids = int(ids.is_null().sum()) + int((~ids.str.contains(ENGINE_TOUCHPOINT_PATTERN)).sum())
    if foreign_ids:
        raise InputError(
            f"{foreign_ids} touchpoint id(s) are not engine ids (tp_ + 32 hex digits); nothing was written. "
            "Write touchpoints from extract_touchpoints() only.",
            {"not an engine touchpoint id": int(foreign_ids)},
        )
    rows = touchpoint_rows_for_postgres(touchpoints, site_id=site_id)
    sites = rows.get_column("siteId").unique().to_list()
    cur.execute(_inline(_FOREIGN_TOUCHPOINT_SITES, [organization_id, site_id, sites]))  # a bound None: untyped
    bad_sites = [site for (site,) in cur.fetchall()]
    if bad_sites:
        foreign = (
            rows.get_column("siteId").is_in(pl.Series(bad_sites, dtype=pl.String).implode(), nulls_equal=True).sum()
        )
        raise InputError(
            f"{foreign} touchpoint(s) belong to a site outside organization {organization_id!r}"
            + ("" if site_id is None else f" or site {site_id!r}")
            + " (or to no site); nothing was written",
            {"foreign site": int(foreign)},
        )
    _TOUCHPOINTS.stage_scope(cur, anon_ids)
    return _TOUCHPOINTS.apply(cur, rows, [organization_id, site_id])


def delete_stale_links(cur: Any, *, organization_id: str, models: Sequence[str], site_id: str | None = None) -> int:
    """Delete the links of other models that point at touchpoints extraction no longer attributes to.

    After :func:`merge_touchpoints` in the same transaction (it staged the users in scope): the users'
    touchpoints are now the engine's rows only, so links of models not in ``models`` (not rewritten by
    this run) that point at other ``TouchPoint`` rows of those users (the platform's, read by an earlier
    run that did not extract) are stale and removed. Links of extracted rows that went away went with
    them already (``ON DELETE CASCADE``). Returns the number of links deleted.

    Parameters
    ----------
    cur
        An ADBC cursor inside the writing transaction (:func:`transaction`).
    organization_id
        The tenant.
    models
        The models this run wrote (their links are merged by :func:`merge_links`, never touched here).
    site_id
        Restrict to one tracking site (the run's ``--site``).

    Returns
    -------
    int
        The number of links deleted.
    """
    statement = _inline(
        f"""DELETE FROM "AttributionLink" l USING "TouchPoint" tp, "TrackingSite" s
        WHERE l."touchPointId" = tp.id AND s.id = tp."siteId" AND s."organizationId" = $1
          AND ($2::text IS NULL OR tp."siteId" = $2) AND NOT (l.model::text = ANY($3::text[]))
          AND tp.id !~ '{ENGINE_TOUCHPOINT_PATTERN}'
          AND tp."anonId" IN (SELECT id FROM pg_temp.{_TOUCHPOINTS.scope_table})""",
        [organization_id, site_id, [str(m) for m in models]],
    )
    cur.execute(f"WITH done AS ({statement} RETURNING 1) SELECT count(*) FROM done")
    (n,) = cur.fetchone()
    return int(n)


def write_touchpoints(
    url: str | Connections,
    touchpoints: pl.DataFrame,
    *,
    organization_id: str,
    anon_ids: pl.Series,
    site_id: str | None = None,
) -> WriteCounts:
    """:func:`merge_touchpoints` in a transaction of its own (all or nothing).

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a connection of its own).
    touchpoints, organization_id, anon_ids, site_id
        As :func:`merge_touchpoints`.

    Returns
    -------
    WriteCounts

    Raises
    ------
    InputError
        As :func:`merge_touchpoints`; nothing is written.
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    with transaction(url) as cur:
        return merge_touchpoints(cur, touchpoints, organization_id=organization_id, anon_ids=anon_ids, site_id=site_id)
