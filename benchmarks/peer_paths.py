"""Aggregated path tables for the peer benchmark, in ChannelAttribution's format, from the simulator.

A *path table* has one row per distinct path: ``path`` (channels joined by ``" > "``), ``total_conversions``
(int), ``total_null`` (int) and ``total_conversion_value`` (float, currency units). It is only a benchmark
input, built simply, not the engine's definition of a journey (docs/contract.md §2/§5):

1. Touchpoints and conversions come from ``optiq_engine.simulate.synthetic.iter_generate`` (docs/synthetic.md),
   in batches of users; a user never spans two batches.
2. Per user, touches and conversions are merged in time order (a touch at the same instant as a conversion
   comes first). A touch belongs to journey ``j`` = the number of the user's conversions strictly before
   it, so journey ``j < n_conversions`` is the converting path of conversion ``j`` (the touches after
   conversion ``j - 1`` up to conversion ``j``), and journey ``n_conversions`` (the tail after the last
   conversion, or all touches of a non-converter) is a non-converting path. The simulator guarantees every
   conversion at least one touch after the previous one, so no converting journey is empty; a user whose
   last touch converted has no tail.
3. Consecutive repeats of a channel within a journey are collapsed ("exposure"): ``a > a > b`` -> ``a > b``.
4. Journeys are counted in user order and the table is cut after exactly ``n_journeys`` of them, then
   grouped by path (``group_by(path).agg(sum)``), sorted by path.

Tables are cached as Parquet under ``benchmarks/.cache/`` (gitignored by its own ``.gitignore``), keyed by
size and seed. ``python -m benchmarks.peer_paths 10k 100k 1M 10M`` builds them ahead of a run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
SIZES: dict[str, int] = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}
SEPARATOR = " > "
PATH_SCHEMA = {
    "path": pl.String,
    "total_conversions": pl.Int64,
    "total_null": pl.Int64,
    "total_conversion_value": pl.Float64,
}


def parse_size(size: str | int) -> int:
    """Return the number of journeys of a size label (``"10k"``, ``"1M"``) or of an int."""
    if isinstance(size, int):
        return size
    if size in SIZES:
        return SIZES[size]
    text = size.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def size_label(n_journeys: int) -> str:
    """Short label of a journey count: 10000 -> ``"10k"``, 1000000 -> ``"1M"``."""
    for label, n in SIZES.items():
        if n == n_journeys:
            return label
    return str(n_journeys)


def journeys_from_events(touchpoints: pl.DataFrame, conversions: pl.DataFrame) -> pl.DataFrame:
    """Per-journey rows (``anon_id``, ``journey``, ``path``, ``converted``, ``value``) of one batch of users.

    Rows are in user order, then journey order; ``value`` is the conversion's value in currency units (0.0
    for a non-converting journey). See the module docstring for the definition.
    """
    touches = touchpoints.select(
        "anon_id", "occurred_at", pl.col("channel").cast(pl.String), pl.lit(0, pl.Int8).alias("is_conversion")
    )
    convs = conversions.select(
        "anon_id", "occurred_at", pl.lit(None, pl.String).alias("channel"), pl.lit(1, pl.Int8).alias("is_conversion")
    )
    events = (
        pl.concat([touches, convs])
        .sort("anon_id", "occurred_at", "is_conversion", maintain_order=True)
        .with_columns(journey=pl.col("is_conversion").cast(pl.Int32).cum_sum().over("anon_id"))
    )
    steps = events.filter(pl.col("is_conversion") == 0).filter(
        (pl.col("channel") != pl.col("channel").shift(1).over("anon_id", "journey")).fill_null(True)
    )
    paths = steps.group_by("anon_id", "journey", maintain_order=True).agg(path=pl.col("channel").str.join(SEPARATOR))
    values = conversions.select(
        "anon_id",
        journey=(pl.int_range(pl.len()).over("anon_id") + 1).cast(pl.Int32) - 1,
        value=pl.col("value_micros") / 1_000_000,
    )
    return (
        paths.join(values, on=["anon_id", "journey"], how="left", maintain_order="left")
        .with_columns(converted=pl.col("value").is_not_null(), value=pl.col("value").fill_null(0.0))
        .select("anon_id", "journey", "path", "converted", "value")
    )


def aggregate_paths(journeys: pl.DataFrame) -> pl.DataFrame:
    """Group per-journey rows into a path table (ChannelAttribution's format), sorted by path."""
    return (
        journeys.group_by("path")
        .agg(
            total_conversions=pl.col("converted").sum().cast(pl.Int64),
            total_null=(~pl.col("converted")).sum().cast(pl.Int64),
            total_conversion_value=pl.col("value").sum(),
        )
        .sort("path")
    )


def build_paths(n_journeys: int, *, seed: int = 0, batch_users: int = 500_000) -> pl.DataFrame:
    """Simulate users until ``n_journeys`` journeys are collected and return their path table.

    Parameters
    ----------
    n_journeys : int
        Journeys in the table (``total_conversions + total_null`` sums to it exactly).
    seed : int
        Simulator seed.
    batch_users : int
        Users simulated per batch (bounds memory; the result does not depend on it).
    """
    from optiq_engine.simulate import synthetic  # the engine is only needed to build a table, not to run a peer

    parts: list[pl.DataFrame] = []
    collected = 0
    # every user has at least one journey, so n_journeys users always suffice; the generator is lazy
    for batch in synthetic.iter_generate(n_users=n_journeys, batch_users=min(batch_users, n_journeys), seed=seed):
        journeys = journeys_from_events(batch.touchpoints, batch.conversions)
        journeys = journeys.head(n_journeys - collected)
        collected += journeys.height
        parts.append(aggregate_paths(journeys))
        if collected >= n_journeys:
            break
    table = pl.concat(parts).group_by("path").agg(pl.all().sum()).sort("path")
    return table.select(pl.col(name).cast(dtype) for name, dtype in PATH_SCHEMA.items())


def load_paths(size: str | int, *, seed: int = 0, cache: bool = True) -> pl.DataFrame:
    """The path table of a size (``"10k"``, ``"100k"``, ``"1M"``, ``"10M"`` or an int), cached as Parquet."""
    n_journeys = parse_size(size)
    file = CACHE_DIR / f"paths_{size_label(n_journeys)}_seed{seed}.parquet"
    if cache and file.exists():
        return pl.read_parquet(file)
    table = build_paths(n_journeys, seed=seed)
    if cache:
        CACHE_DIR.mkdir(exist_ok=True)
        ignore = CACHE_DIR / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
        table.write_parquet(file)
    return table


def describe_paths(paths: pl.DataFrame) -> dict[str, float | int]:
    """Summary of a path table: journeys, conversions, distinct paths, channels, mean and max path length."""
    lengths = paths["path"].str.split(SEPARATOR).list.len()
    weights = paths["total_conversions"] + paths["total_null"]
    channels = paths["path"].str.split(SEPARATOR).explode().unique()
    return {
        "journeys": int(weights.sum()),
        "conversions": int(paths["total_conversions"].sum()),
        "distinct_paths": paths.height,
        "channels": channels.len(),
        "mean_path_length": float((lengths * weights).sum() / weights.sum()),
        "max_path_length": int(lengths.max()),
    }


def main(argv: list[str] | None = None) -> None:
    """Build (or load) the cached tables of the sizes given on the command line and print a summary."""
    for size in (argv if argv is not None else sys.argv[1:]) or list(SIZES):
        start = time.perf_counter()
        table = load_paths(size)
        print(size, f"{time.perf_counter() - start:.1f} s", describe_paths(table), flush=True)


if __name__ == "__main__":
    main()
