"""Run the engine (and the Polars baseline) with the reference's plain-Python calling convention.

One comparison table for tests and benchmarks: :data:`IMPLEMENTATIONS` maps a name to a function with
the signature of :func:`tests.reference.attribution.attribute_reference`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

import optiq_engine as oq
from tests.reference.attribution import MICROS_PER_DAY, attribute_reference

TIMESTAMP = pl.Datetime("us", "UTC")


def touchpoints_frame(touchpoints: list[dict], group_by: tuple[str, ...]) -> pl.DataFrame:
    schema = {k: pl.String for k in group_by if k != "anon_id"}
    schema |= {"touchpoint_id": pl.String, "anon_id": pl.String, "occurred_at": pl.Int64, "channel": pl.String}
    rows = [{k: r.get(k) for k in schema} for r in touchpoints]
    return pl.DataFrame(rows, schema=schema, orient="row").with_columns(pl.col("occurred_at").cast(TIMESTAMP))


def conversions_frame(conversions: list[dict], group_by: tuple[str, ...]) -> pl.DataFrame:
    schema = {k: pl.String for k in group_by if k != "anon_id"}
    schema |= {"conversion_id": pl.String, "anon_id": pl.String, "occurred_at": pl.Int64, "value_micros": pl.Int64}
    rows = [{k: r.get(k) for k in schema} for r in conversions]
    return pl.DataFrame(rows, schema=schema, orient="row").with_columns(pl.col("occurred_at").cast(TIMESTAMP))


def model_object(name: str, params: dict) -> oq.models.AttributionModel:
    if name == "POSITION_BASED":
        return oq.models.PositionBased(first=params.get("first", 0.4), last=params.get("last", 0.4))
    if name == "TIME_DECAY":
        return oq.models.TimeDecay(half_life=timedelta(microseconds=params.get("half_life_us", 7 * MICROS_PER_DAY)))
    return oq.get_model(name)()


def attribute_engine(
    touchpoints: list[dict],
    conversions: list[dict],
    *,
    models: list[tuple[str, dict]],
    lookback_us: int = 30 * MICROS_PER_DAY,
    reset_after_conversion: bool = True,
    group_by: tuple[str, ...] = ("anon_id",),
    direct_channels: tuple[str, ...] = ("direct",),
) -> tuple[list[dict], list[dict]]:
    """oq.attribute() on the same rows, returning the reference's (links, unattributed) dicts."""
    result = oq.attribute(
        touchpoints_frame(touchpoints, group_by),
        conversions_frame(conversions, group_by),
        models=[model_object(n, p) for n, p in models],
        lookback=timedelta(microseconds=lookback_us),
        reset_after_conversion=reset_after_conversion,
        direct_channels=direct_channels,
    )
    links = result.links.with_columns(pl.col("model", "channel").cast(pl.String)).to_dicts()
    unattributed = result.unattributed.select(
        "conversion_id", "anon_id", pl.col("occurred_at").cast(pl.Int64), "value_micros", "reason"
    ).to_dicts()
    rank = {c["conversion_id"]: i for i, c in enumerate(conversions)}
    unattributed.sort(key=lambda r: rank[r["conversion_id"]])  # the reference's order: input order
    return links, unattributed


IMPLEMENTATIONS: dict[str, Any] = {"reference": attribute_reference, "engine": attribute_engine}
