"""Load a synthetic data set into an Optiq database (for demos, tests, notebooks and benchmarks).

Two ways in:

- :func:`load_synthetic` (``optiq demo --database-url``): the simulator's data as **tracking events**
  (a ``PAGE_VIEW`` per touchpoint, with its UTM parameters and click ids, and a ``CONVERSION`` per
  conversion) through :func:`optiq_engine.io.load.load_events`, the path of a user's own events
  (``optiq db load``); touchpoints are then extracted from the events by ``optiq run``. It also adds a
  user who owns the organization, so that ``optiq keys create`` has someone to give a key to.
- :func:`write_synthetic` (tests and benchmarks): organizations, tracking sites, conversion events and
  the platform's ``TouchPoint`` rows with the simulator's own ids (``TrackingEvent.id`` is the
  ``conversion_id``), with ADBC's bulk ingest (binary ``COPY``); with ``page_views=True`` every touchpoint
  also gets the ``PAGE_VIEW`` tracking event it was extracted from (``TouchPoint.trackingEventId``), as the
  platform records them.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ..simulate.synthetic import SyntheticData
from .load import LoadSummary, load_events
from .postgres import adbc_url

__all__ = ["write_synthetic", "load_synthetic", "synthetic_events"]

_EVENT_PARAMETERS = ("utm_source", "utm_medium", "utm_campaign", "gclid", "fbclid", "ttclid")


def synthetic_events(data: SyntheticData) -> pl.DataFrame:
    """The synthetic data set as one events frame (``docs/contract.md`` §1).

    Every touchpoint is a ``PAGE_VIEW`` (``event_id`` its ``touchpoint_id``) with its UTM parameters and
    click ids; every conversion a ``CONVERSION`` (``event_id`` its ``conversion_id``) with its value and
    name. Touchpoints without parameters (direct traffic) become page views that extraction skips.

    Parameters
    ----------
    data
        A synthetic data set (:func:`optiq_engine.synthetic.generate`).

    Returns
    -------
    polars.DataFrame
        ``event_id``, ``anon_id``, ``occurred_at``, ``type``, the UTM and click-id columns, ``value_micros``
        and ``name`` (null where they do not apply), sorted by ``occurred_at`` then ``event_id``; no
        organization or site column.
    """
    views = data.touchpoints.select(
        pl.col("touchpoint_id").alias("event_id"),
        "anon_id",
        "occurred_at",
        pl.lit("PAGE_VIEW").alias("type"),
        *(pl.col(c) if c in data.touchpoints.columns else pl.lit(None, pl.String).alias(c) for c in _EVENT_PARAMETERS),
    )
    conversions = data.conversions.select(
        pl.col("conversion_id").alias("event_id"),
        "anon_id",
        "occurred_at",
        pl.lit("CONVERSION").alias("type"),
        "value_micros",
        "name",
    )
    return pl.concat([views, conversions], how="diagonal_relaxed").sort("occurred_at", "event_id")


def load_synthetic(
    url_or_connection: Any,
    data: SyntheticData,
    *,
    organization_id: str = "demo",
    site_id: str = "demo-web",
    user_id: str | None = "demo",
) -> LoadSummary:
    """Load ``data`` as the tracking events of one organization's site (created if missing).

    Parameters
    ----------
    url_or_connection
        As in :func:`~optiq_engine.io.load.load_events`.
    data
        A synthetic data set (its own organization and site columns are replaced by the arguments).
    organization_id, site_id
        Where the events go; both are created when missing.
    user_id
        A ``User`` (email ``<user_id>@<organization_id>.example``) made ``OWNER`` of the organization, for
        ``optiq keys create --user``; ``None``: no user. Existing users and memberships are left as they are.

    Returns
    -------
    LoadSummary
        A rerun with the same data inserts nothing (the events are already present).

    Raises
    ------
    ConfigError, SchemaError, InputError
        As :func:`~optiq_engine.io.load.load_events` (the site belongs to another organization; invalid
        events); nothing is written.
    """
    from .load import _transaction

    events = synthetic_events(data)
    with _transaction(url_or_connection, organization_id=organization_id) as conn:
        summary = load_events(events, conn, organization_id=organization_id, site_id=site_id, create=True)
        if user_id is not None:
            conn.execute(
                'INSERT INTO "User" (id, name, email) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING',
                (user_id, user_id, f"{user_id}@{organization_id}.example"),
            )
            conn.execute(
                """INSERT INTO "Membership" (id, "userId", "organizationId", role)
                   VALUES (%s, %s, %s, 'OWNER') ON CONFLICT DO NOTHING""",
                (f"m_{organization_id}_{user_id}", user_id, organization_id),
            )
    return summary


def _ingest(conn, table: str, frame: pl.DataFrame) -> int:  # noqa: ANN001 - an ADBC connection
    with conn.cursor() as cur:
        return int(cur.adbc_ingest(table, frame.to_arrow(), mode="append"))


def write_synthetic(url: str, data: SyntheticData, *, page_views: bool = False) -> dict[str, int]:
    """Insert ``data`` into the Optiq tables at ``url`` (created by ``optiq db upgrade``); row counts.

    Organizations and sites are created from the data's ``organization_id`` / ``site_id`` values
    (one site per (organization, site) pair, its domain the site id). Everything is inserted in one
    transaction.

    Parameters
    ----------
    url
        A PostgreSQL URL of a database at the current schema revision, without these rows yet (plain
        inserts: a second call with the same data fails on the primary keys).
    data
        A synthetic data set with ``organization_id`` and ``site_id`` columns.
    page_views
        Also insert a ``PAGE_VIEW`` event (id ``ev_<touchpoint_id>``) per touchpoint and reference it from
        ``TouchPoint.trackingEventId`` (default False: null).

    Returns
    -------
    dict of str to int
        Rows inserted per table (``Organization``, ``TrackingSite``, ``TrackingEvent``, ``TouchPoint``).

    Raises
    ------
    ConfigError
        ``url`` is not a PostgreSQL URL.
    """
    import adbc_driver_postgresql.dbapi as adbc

    tp, cv = data.touchpoints, data.conversions
    sites = pl.concat([tp.select("organization_id", "site_id"), cv.select("organization_id", "site_id")]).unique()
    organizations = sites.select(
        pl.col("organization_id").alias("id"),
        pl.col("organization_id").alias("name"),
        pl.col("organization_id").alias("slug"),
    ).unique()
    tracking_sites = sites.select(
        pl.col("site_id").alias("id"),
        pl.col("organization_id").alias("organizationId"),
        pl.col("site_id").alias("name"),
        pl.format("{}.example", pl.col("site_id")).alias("domain"),
        pl.format("pk_{}", pl.col("site_id")).alias("publicKey"),
    )
    utm = {"utm_source": "utmSource", "utm_medium": "utmMedium", "utm_campaign": "utmCampaign"}
    conversions = cv.select(
        pl.col("conversion_id").alias("id"),
        pl.col("site_id").alias("siteId"),
        pl.col("conversion_id").alias("eventId"),
        pl.lit("CONVERSION").alias("type"),
        "name",
        pl.col("occurred_at").alias("occurredAt"),
        pl.col("anon_id").alias("anonId"),
        pl.col("value_micros").alias("valueMicros"),
    )
    touchpoints = tp.select(
        pl.col("touchpoint_id").alias("id"),
        pl.col("site_id").alias("siteId"),
        (pl.lit("ev_") + pl.col("touchpoint_id")).alias("trackingEventId")
        if page_views
        else pl.lit(None, pl.String).alias("trackingEventId"),
        pl.col("anon_id").alias("anonId"),
        pl.col("occurred_at").alias("occurredAt"),
        "gclid",
        "fbclid",
        "ttclid",
        *(pl.col(k).alias(v) for k, v in utm.items()),
    )
    counts: dict[str, int] = {}
    with adbc.connect(adbc_url(url)) as conn:
        counts["Organization"] = _ingest(conn, "Organization", organizations)
        counts["TrackingSite"] = _ingest(conn, "TrackingSite", tracking_sites)
        if page_views:
            views = tp.select(
                (pl.lit("ev_") + pl.col("touchpoint_id")).alias("id"),
                pl.col("site_id").alias("siteId"),
                (pl.lit("ev_") + pl.col("touchpoint_id")).alias("eventId"),
                pl.lit("PAGE_VIEW").alias("type"),
                pl.col("occurred_at").alias("occurredAt"),
                pl.col("anon_id").alias("anonId"),
                "gclid",
                "fbclid",
                "ttclid",
                *(pl.col(k).alias(v) for k, v in utm.items()),
            )
            counts["TrackingEvent"] = _ingest(conn, "TrackingEvent", views)
        counts["TrackingEvent"] = counts.get("TrackingEvent", 0) + _ingest(conn, "TrackingEvent", conversions)
        counts["TouchPoint"] = _ingest(conn, "TouchPoint", touchpoints)
        conn.commit()
    return counts
