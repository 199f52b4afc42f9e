"""Load a synthetic data set into an Optiq database (for demos, tests, notebooks and benchmarks).

Organizations, tracking sites, conversion events and touchpoints go in with ADBC's bulk ingest (binary
``COPY``); with ``page_views=True`` every touchpoint also gets the ``PAGE_VIEW`` tracking event it was
extracted from (``TouchPoint.trackingEventId``), as the platform records them.
"""

from __future__ import annotations

import polars as pl

from .postgres import adbc_url
from .synthetic import SyntheticData

__all__ = ["write_synthetic"]


def _ingest(conn, table: str, frame: pl.DataFrame) -> int:  # noqa: ANN001 - an ADBC connection
    with conn.cursor() as cur:
        return int(cur.adbc_ingest(table, frame.to_arrow(), mode="append"))


def write_synthetic(url: str, data: SyntheticData, *, page_views: bool = False) -> dict[str, int]:
    """Insert ``data`` into the Optiq tables at ``url`` (created by ``optiq db upgrade``); row counts.

    Organizations and sites are created from the data's ``organization_id`` / ``site_id`` values
    (one site per (organization, site) pair, its domain the site id). Everything is inserted in one
    transaction.
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
        (pl.lit("ev_") + pl.col("touchpoint_id")).alias("trackingEventId") if page_views else pl.lit(None, pl.String).alias("trackingEventId"),
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
