"""Plain-Polars baseline for the six heuristic attribution models.

This is the reference point the engine is benchmarked against: an idiomatic
Polars implementation (joins, filters, window expressions) of the semantics in
``docs/attribution.md``, with no Python loops over rows, no UDFs and no numba.

Known limitation (acceptable for a baseline): the largest-remainder value split
gives one extra unit to each of the first ``R`` positions ranked by
``(fraction desc, position desc)``. That is exact when ``0 <= R <= n``, which
holds whenever ``value_micros < 2**53`` (the float quotas are then exact enough
that ``sum(floor(q_k))`` lies in ``(V - n, V]``). The multi-round and negative
remainder cases of the docs (only reachable through float rounding of huge
values) are not implemented.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import polars as pl

ALL_MODELS: tuple[str, ...] = (
    "FIRST_TOUCH",
    "LAST_TOUCH",
    "LAST_NON_DIRECT",
    "LINEAR",
    "POSITION_BASED",
    "TIME_DECAY",
)

LINKS_SCHEMA: dict[str, pl.DataType] = {
    "conversion_id": pl.String(),
    "touchpoint_id": pl.String(),
    "model": pl.String(),
    "weight": pl.Float64(),
    "position": pl.Int32(),
    "touchpoint_count": pl.Int32(),
    "credited_value_micros": pl.Int64(),
    "channel": pl.String(),
}

_US = timedelta(microseconds=1)


def _true_div(numerator: pl.Expr, divisor: float) -> pl.Expr:
    """``numerator / divisor``, correctly rounded.

    Polars evaluates ``column / scalar`` as ``column * (1 / scalar)``, which can be an
    ulp off the IEEE quotient (e.g. 898135140442 / 3.6e9). The docs fix the TIME_DECAY
    exponent as a float64 division, so the divisor is broadcast to a full column first.
    """
    return numerator / (pl.int_range(pl.len()).cast(pl.Float64) * 0.0 + divisor)


def _check_args(
    models: Sequence[str],
    lookback: timedelta,
    first: float,
    last: float,
    half_life: timedelta,
    group_by: Sequence[str],
) -> list[str]:
    models = list(models)
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {ALL_MODELS}")
    if len(set(models)) != len(models):
        raise ValueError(f"duplicate model in {models}")
    if lookback <= timedelta(0):
        raise ValueError("lookback must be positive")
    if half_life <= timedelta(0):
        raise ValueError("half_life must be positive")
    if not (first >= 0 and last >= 0 and first + last > 0 and first + last <= 1):
        raise ValueError("POSITION_BASED needs first, last >= 0 and 0 < first + last <= 1")
    if "anon_id" not in group_by:
        raise ValueError("group_by must contain 'anon_id'")
    return models


def attribute_polars(
    touchpoints: pl.DataFrame,
    conversions: pl.DataFrame,
    *,
    models: Sequence[str] = ALL_MODELS,
    lookback: timedelta = timedelta(days=30),
    reset_after_conversion: bool = True,
    first: float = 0.4,
    last: float = 0.4,
    half_life: timedelta = timedelta(days=7),
    direct_channels: Sequence[str] = ("direct",),
    group_by: Sequence[str] = ("anon_id",),
) -> pl.DataFrame:
    """Return the links frame (one row per conversion, eligible touchpoint, model).

    Rows are sorted by ``(conversion_id, model in the order given, position)``.
    """
    models = _check_args(models, lookback, first, last, half_life, group_by)
    keys = list(group_by)
    if not models:
        return pl.DataFrame(schema=LINKS_SCHEMA)

    # -- inputs: only the columns we need, with the engine's internal names ---------
    tp = touchpoints.select(
        *keys,
        pl.col("touchpoint_id").cast(pl.String),
        pl.col("occurred_at").alias("t"),
        pl.col("channel").cast(pl.String),
    )
    value = (
        pl.col("value_micros").cast(pl.Int64) if "value_micros" in conversions.columns else pl.lit(0, dtype=pl.Int64)
    )
    conv = conversions.select(
        *keys,
        pl.col("conversion_id").cast(pl.String),
        pl.col("occurred_at").alias("T"),
        value.alias("V"),
    )

    # -- eligibility window ---------------------------------------------------------
    # previous conversion of the same group in (occurred_at, conversion_id) order
    if reset_after_conversion:
        conv = conv.with_columns(T_prev=pl.col("T").shift(1).over(keys, order_by=["T", "conversion_id"]))
    # Equi-join on the group key (nulls in organization_id / site_id are a value of
    # their own), then keep the touchpoints inside (T - L, T] and after T_prev.
    window = (pl.col("t") <= pl.col("T")) & (pl.col("t") > pl.col("T") - lookback)
    if reset_after_conversion:
        window &= pl.col("T_prev").is_null() | (pl.col("t") > pl.col("T_prev"))
    elig = (
        conv.lazy()
        .join(tp.lazy(), on=keys, how="inner", nulls_equal=True)
        .filter(window)
        .select("conversion_id", "touchpoint_id", "t", "channel", "V")
        # chronological order inside each conversion; ties broken by touchpoint_id
        .sort("conversion_id", "t", "touchpoint_id")
    )

    # -- per-conversion position / count ----------------------------------------------
    c = "conversion_id"
    position = pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(c)
    elig = elig.with_columns(
        position=position,
        touchpoint_count=pl.len().over(c).cast(pl.Int32),
    )

    # -- weights, one column per model -----------------------------------------------
    k = pl.col("position")
    n = pl.col("touchpoint_count")
    weight_exprs: dict[str, pl.Expr] = {}
    for m in models:
        if m == "FIRST_TOUCH":
            w = (k == 1).cast(pl.Float64)
        elif m == "LAST_TOUCH":
            w = (k == n).cast(pl.Float64)
        elif m == "LAST_NON_DIRECT":
            non_direct = ~pl.col("channel").is_in(list(direct_channels)).fill_null(False)
            target = pl.when(non_direct).then(k).max().over(c).fill_null(n)
            w = (k == target).cast(pl.Float64)
        elif m == "LINEAR":
            w = 1.0 / n.cast(pl.Float64)
        elif m == "POSITION_BASED":
            middle = pl.lit(1.0 - first - last) / (n - 2).cast(pl.Float64)
            w = (
                pl.when(n == 1)
                .then(1.0)
                .when(n == 2)
                .then(pl.when(k == 1).then(first / (first + last)).otherwise(last / (first + last)))
                .when(k == 1)
                .then(first)
                .when(k == n)
                .then(last)
                .otherwise(middle)
            )
        else:  # TIME_DECAY: age from the last eligible touchpoint, in microseconds
            h = float(half_life // _US)
            age = (pl.col("t").last().over(c) - pl.col("t")).dt.total_microseconds()
            w = pl.lit(2.0).pow(-_true_div(age.cast(pl.Float64), h))
        weight_exprs[m] = w.cast(pl.Float64)

    wide = elig.with_columns(**weight_exprs)
    if "TIME_DECAY" in weight_exprs:
        # normalise; cum_sum(...).last() sums left to right in position order
        wide = wide.with_columns(TIME_DECAY=pl.col("TIME_DECAY") / pl.col("TIME_DECAY").cum_sum().last().over(c))

    # -- long format + largest-remainder value split ---------------------------------
    model_enum = pl.Enum(models)
    long = wide.unpivot(
        on=models,
        index=[
            "conversion_id",
            "touchpoint_id",
            "channel",
            "position",
            "touchpoint_count",
            "V",
        ],
        variable_name="model",
        value_name="weight",
    ).with_columns(pl.col("model").cast(model_enum))

    cm = ["conversion_id", "model"]
    v_f = pl.col("V").cast(pl.Float64)
    q = v_f * pl.col("weight")
    long = long.with_columns(q=q, q_floor=q.floor()).with_columns(
        base=pl.when(pl.col("q") >= v_f).then(pl.col("V")).otherwise(pl.col("q_floor").cast(pl.Int64, strict=False)),
        frac=pl.col("q") - pl.col("q_floor"),
    )
    long = long.with_columns(
        remainder=pl.col("V") - pl.col("base").sum().over(cm),
        # 1 = largest fraction; ties go to the later position
        rank=pl.int_range(1, pl.len() + 1).over(cm, order_by=["frac", "position"], descending=True),
    ).with_columns(credited_value_micros=pl.col("base") + (pl.col("rank") <= pl.col("remainder")).cast(pl.Int64))

    out = (
        long.sort("conversion_id", "model", "position")
        .select(
            "conversion_id",
            "touchpoint_id",
            pl.col("model").cast(pl.String),
            "weight",
            "position",
            "touchpoint_count",
            "credited_value_micros",
            "channel",
        )
        .collect()
    )
    return out.cast(LINKS_SCHEMA)  # type: ignore[arg-type]
