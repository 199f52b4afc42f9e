"""pytest-benchmark suite: attribute() and the Polars baseline on the same synthetic data.

Sizes come from ``OPTIQ_BENCH_USERS`` (default 20,000 users, about 100k touchpoints, so the suite also runs
quickly as a test with ``--benchmark-disable``). For the recorded figures use ``benchmarks/run.py``.
Run with ``pytest benchmarks --benchmark-enable --benchmark-group-by=param:models``.
"""

from __future__ import annotations

import os

import polars as pl
import pytest

import optiq_engine as oq
from benchmarks.polars_baseline import attribute_polars
from optiq_engine.result import LINK_COLUMNS

USERS = int(os.environ.get("OPTIQ_BENCH_USERS", "20000"))
MODELS = list(oq.models.HEURISTIC_MODELS)


@pytest.fixture(scope="module")
def data() -> oq.synthetic.SyntheticData:
    return oq.synthetic.generate(n_users=USERS, seed=0)


def canonical(links: pl.DataFrame) -> pl.DataFrame:
    return (
        links.with_columns(pl.col("model", "channel").cast(pl.String))
        .select(LINK_COLUMNS)
        .sort("model", "conversion_id", "position")
    )


def test_engine(benchmark, data) -> None:
    result = benchmark(oq.attribute, data.touchpoints, data.conversions, models=MODELS)
    assert result.links.height > 0


def test_polars_baseline(benchmark, data) -> None:
    tp = data.touchpoints.with_columns(pl.col("channel").cast(pl.String))
    links = benchmark(attribute_polars, tp, data.conversions, models=MODELS)
    assert links.height > 0


def test_baseline_agrees_with_engine(data) -> None:
    """The baseline is only a fair comparison if it computes the same thing."""
    ours = canonical(oq.attribute(data.touchpoints, data.conversions, models=MODELS).links)
    tp = data.touchpoints.with_columns(pl.col("channel").cast(pl.String))
    theirs = canonical(attribute_polars(tp, data.conversions, models=MODELS))
    assert ours.drop("weight").equals(theirs.drop("weight"))
    assert (ours["weight"] - theirs["weight"]).abs().max() < 1e-12
