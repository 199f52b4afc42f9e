"""Data and links of the tests that run on a real Optiq database (the ``postgres_url`` fixture).

Synthetic data under an organization of its own (:func:`retag`), the attribution links of an organization
as stored (:func:`db_links`) and a result's links in the same form (:func:`expected_links`), and the
psycopg connection string of a SQLAlchemy URL (:func:`psycopg_dsn`).
"""

from __future__ import annotations

import polars as pl
import psycopg
from sqlalchemy.engine import make_url

import optiq_engine as oq


def retag(data: oq.synthetic.SyntheticData, org: str) -> oq.synthetic.SyntheticData:
    """The same users (same anon ids) under another organization, with ids of its own."""
    site = f"site_{org}"
    tp = data.touchpoints.with_columns(
        (pl.lit(f"{org}_") + pl.col("touchpoint_id")).alias("touchpoint_id"),
        pl.lit(org).alias("organization_id"),
        pl.lit(site).alias("site_id"),
    )
    cv = data.conversions.with_columns(
        (pl.lit(f"{org}_") + pl.col("conversion_id")).alias("conversion_id"),
        pl.lit(org).alias("organization_id"),
        pl.lit(site).alias("site_id"),
    )
    return oq.synthetic.SyntheticData(tp, cv, data.truth, data.seed)


def psycopg_dsn(url: str) -> str:
    """The connection string psycopg takes for a SQLAlchemy URL (driver name dropped, password kept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def db_links(url: str, org: str) -> pl.DataFrame:
    """The ``AttributionLink`` rows of one organization's conversions, sorted by model, conversion, position."""
    with psycopg.connect(psycopg_dsn(url)) as conn:
        rows = conn.execute(
            """SELECT al."conversionId", al."touchPointId", al.model::text, al.weight, al.position, al."touchPointCount"
               FROM "AttributionLink" al JOIN "TrackingEvent" e ON e.id = al."conversionId"
               JOIN "TrackingSite" s ON s.id = e."siteId" WHERE s."organizationId" = %s""",
            (org,),
        ).fetchall()
    schema = ["conversion_id", "touchpoint_id", "model", "weight", "position", "touchpoint_count"]
    return pl.DataFrame(rows, schema=schema, orient="row").sort("model", "conversion_id", "position")


def expected_links(result: oq.AttributionResult) -> pl.DataFrame:
    """A result's links in the form of :func:`db_links`."""
    return (
        result.links.select(
            "conversion_id", "touchpoint_id", pl.col("model").cast(pl.String), "weight", "position", "touchpoint_count"
        )
        .with_columns(pl.col("position", "touchpoint_count").cast(pl.Int64))
        .sort("model", "conversion_id", "position")
    )
