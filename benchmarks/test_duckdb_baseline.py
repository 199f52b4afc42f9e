"""The DuckDB baseline computes the engine's links: on the simulator's data, on the Polars baseline's worked
examples, and where the value split needs more than one round."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

import optiq_engine as oq
from benchmarks.polars_baseline import ALL_MODELS, LINKS_SCHEMA, attribute_polars
from benchmarks.test_polars_baseline import (
    DAY,
    JOURNEY_CV,
    JOURNEY_EXPECTED,
    JOURNEY_TP,
    T0,
    US,
    convs,
    tps,
)

duckdb = pytest.importorskip(
    "duckdb", reason="duckdb is not installed (a benchmark-only dependency: pip install -e '.[dev]')"
)

from benchmarks.duckdb_baseline import attribute_duckdb, links_query  # noqa: E402  (needs duckdb)

MODELS = list(oq.models.HEURISTIC_MODELS)
assert list(ALL_MODELS) == MODELS


def canonical(links: pl.DataFrame) -> pl.DataFrame:
    return (
        links.with_columns(pl.col("model", "channel").cast(pl.String))
        .select(*LINKS_SCHEMA)
        .sort("model", "conversion_id", "position")
    )


def engine_links(tp: pl.DataFrame, cv: pl.DataFrame, models=MODELS, **config) -> pl.DataFrame:
    return canonical(oq.attribute(tp, cv, models=models, **config).links)


def assert_same_links(ours: pl.DataFrame, theirs: pl.DataFrame) -> None:
    """Ids, models, positions, counts, channels and credited micros exactly; weights to 1e-12."""
    assert ours.height == theirs.height
    assert ours.drop("weight").equals(theirs.drop("weight"))
    if ours.height:
        assert (ours["weight"] - theirs["weight"]).abs().max() < 1e-12


@pytest.fixture(scope="module")
def simulated() -> tuple[pl.DataFrame, pl.DataFrame]:
    """About 100k touchpoints from the simulator, rows shuffled (the engine's input order is no help)."""
    data = oq.synthetic.generate(n_users=20_000, seed=3)
    tp = data.touchpoints.sample(fraction=1.0, shuffle=True, seed=1)
    cv = data.conversions.sample(fraction=1.0, shuffle=True, seed=2)
    assert 90_000 < tp.height < 110_000
    return tp, cv


@pytest.mark.parametrize("unpivot", ["polars", "sql"])
def test_links_equal_the_engine_on_the_simulator(simulated, unpivot):
    tp, cv = simulated
    ours = engine_links(tp, cv)
    theirs = canonical(attribute_duckdb(tp, cv, unpivot=unpivot))
    assert ours.height > 200_000
    assert_same_links(ours, theirs)
    assert dict(attribute_duckdb(tp.head(1000), cv.head(100), unpivot=unpivot).schema) == LINKS_SCHEMA


def test_links_equal_the_engine_with_other_options(simulated):
    """No reset after conversion, a J-curve, a short half-life and lookback, email counted as direct."""
    tp, cv = simulated
    options = {
        "reset_after_conversion": False,
        "lookback": timedelta(days=7),
        "half_life": timedelta(hours=20),
        "direct_channels": ("direct", "email"),
    }
    models = [
        oq.models.FirstTouch(),
        oq.models.LastNonDirect(),
        oq.models.PositionBased(first=0.2, last=0.6),
        oq.models.TimeDecay(half_life=timedelta(hours=20)),
    ]
    ours = engine_links(tp, cv, models=models, **options)
    theirs = canonical(
        attribute_duckdb(
            tp,
            cv,
            models=[m.name for m in models],
            first=0.2,
            last=0.6,
            **options,
        )
    )
    assert_same_links(ours, theirs)


def test_group_key_with_nulls_equals_the_engine(simulated):
    """organization_id / site_id in the key: a null is a value of its own, and a user seen on two sites is
    two groups."""
    tp, cv = simulated
    h = pl.col("anon_id").hash(seed=5)
    tp = tp.with_columns(
        organization_id=pl.when(h % 4 == 0).then(None).otherwise(pl.col("organization_id")),
        site_id=pl.when(pl.col("touchpoint_id").hash(seed=6) % 5 == 0).then(pl.lit("other_site")).otherwise("site_id"),
    )
    cv = cv.with_columns(organization_id=pl.when(h % 4 == 0).then(None).otherwise(pl.col("organization_id")))
    keys = ("organization_id", "site_id", "anon_id")
    ours = engine_links(tp, cv)
    assert_same_links(ours, canonical(attribute_duckdb(tp, cv, group_by=keys)))
    # the key matters here: grouping by anon_id alone credits other touchpoints
    assert not ours.drop("weight").equals(canonical(attribute_duckdb(tp, cv)).drop("weight"))


@pytest.mark.parametrize(("model", "weights", "credited"), JOURNEY_EXPECTED)
def test_each_model_on_one_journey(model, weights, credited):
    links = canonical(attribute_duckdb(JOURNEY_TP, JOURNEY_CV, half_life=DAY)).filter(pl.col("model") == model)
    assert links["touchpoint_id"].to_list() == ["a1", "a2", "a3"]
    assert links["weight"].to_list() == pytest.approx(weights, rel=1e-15, abs=0)
    assert links["credited_value_micros"].to_list() == credited


def _worked_examples():
    """The Polars baseline's hand-checked inputs: (touchpoints, conversions, options)."""
    ties = tps([("tp_b", "u", T0 + DAY, "b_chan"), ("tp_c", "u", T0 + DAY, "direct"), ("tp_a", "u", T0 + DAY, "a")])
    resets = tps(
        [
            ("x1", "u", T0, "x"),
            ("x2", "u", T0 + 2 * DAY, "x"),
            ("x3", "u", T0 + 3 * DAY, "x"),
            ("y1", "v", T0 + 9 * DAY, "x"),
        ]
    )
    resets_cv = convs(
        [
            ("c1", "u", T0 + 2 * DAY, 10),
            ("c2", "u", T0 + 4 * DAY, 10),
            ("c3", "u", T0 + 5 * DAY, 10),
            ("vb", "v", T0 + 10 * DAY, 10),
            ("va", "v", T0 + 10 * DAY, 10),
            ("nobody", "w", T0, 10),
        ]
    )
    T = T0 + 40 * DAY
    edges = tps(
        [
            ("out", "u", T - 30 * DAY, "x"),
            ("in", "u", T - 30 * DAY + US, "x"),
            ("at_T", "u", T, "x"),
            ("after", "u", T + US, "x"),
        ]
    )
    two = tps([("a", "u", T0, "x"), ("b", "u", T0 + US, "y")])
    four = tps([(f"a{i}", "u", T0 + i * US, "x") for i in range(4)])
    return [
        (ties, convs([("c", "u", T0 + 2 * DAY, 100)]), {}),
        (resets, resets_cv, {"reset_after_conversion": True}),
        (resets, resets_cv, {"reset_after_conversion": False}),
        (edges, convs([("c", "u", T, 0)]), {"reset_after_conversion": False}),
        (two, convs([("c", "u", T0 + DAY, 5)]), {}),
        (two, convs([("c", "u", T0 + DAY, 10)]), {"first": 0.2, "last": 0.6}),
        (four, convs([("c", "u", T0 + DAY, 10)]), {"first": 0.6, "last": 0.2}),
        (four, convs([(f"c{v}", "u", T0 + DAY + v % 7 * US, v) for v in (0, 1, 2, 3, 10**15 + 1)]), {}),
        (JOURNEY_TP, JOURNEY_CV, {"direct_channels": ("direct", "google")}),
        (tps([("a", "u", T0 + DAY, "x")]), convs([("c", "u", T0, 1)]), {}),  # no links at all
    ]


@pytest.mark.parametrize("case", range(len(_worked_examples())))
def test_worked_examples_equal_the_polars_baseline(case):
    tp, cv, options = _worked_examples()[case]
    theirs = canonical(attribute_polars(tp, cv, **options))
    assert_same_links(canonical(attribute_duckdb(tp, cv, **options)), theirs)


def test_time_decay_sums_left_to_right_on_a_long_journey():
    """The normaliser is the left-to-right float sum of the docs (the engine's), also past DuckDB's
    16-row segment-tree leaves: weights equal bit for bit to a plain Python loop."""
    h = timedelta(hours=5)
    offsets = [(i * 7919) % 100_003 * 3_600_000 for i in range(45)]  # distinct, unsorted, within 30 days
    tp = tps([(f"t{i:02d}", "u", T0 + o * US, "x") for i, o in enumerate(offsets)])
    cv = convs([("c", "u", T0 + 29 * DAY, 10**12 + 7)])
    links = canonical(attribute_duckdb(tp, cv, models=["TIME_DECAY"], half_life=h)).sort("position")
    ts = sorted(offsets)
    raw = [2.0 ** (-float(ts[-1] - t) / float(h // US)) for t in ts]
    total = 0.0
    for r in raw:
        total += r
    assert links["weight"].to_list() == [r / total for r in raw]
    assert links["credited_value_micros"].sum() == 10**12 + 7


@pytest.mark.parametrize(
    ("value", "n", "models"),
    [
        (2**62 + 12345, 3, ["LINEAR", "POSITION_BASED", "TIME_DECAY"]),  # remainders 313, 185, 57 > n: rounds
        (2**62 + 12345, 5, ["LINEAR"]),  # remainder -71: units taken back from the later positions
        (10**18 + 7, 10, ["LINEAR", "POSITION_BASED", "TIME_DECAY"]),
    ],
)
def test_huge_values_split_like_the_engine(value, n, models):
    tp = tps([(f"t{i}", "u", T0 + i * 3 * 3_600_000_000 * US, "x") for i in range(n)])
    cv = convs([("c", "u", T0 + 2 * DAY, value)])
    ours = engine_links(tp, cv, models=models, half_life=timedelta(hours=9))
    theirs = canonical(attribute_duckdb(tp, cv, models=models, half_life=timedelta(hours=9)))
    assert_same_links(ours, theirs)
    assert theirs.group_by("model").agg(pl.col("credited_value_micros").sum())["credited_value_micros"].to_list() == [
        value
    ] * len(models)


@pytest.mark.parametrize(
    ("value", "n", "model", "half_life"),
    [
        # five touchpoints 1 us apart, half-life 3 us: the floored quotas add up to 7 units more than the value
        (2**62 + 12345, 5, "TIME_DECAY", timedelta(microseconds=3)),
        # three touchpoints: 0.4 / 0.2 / 0.4 of the largest value floor to one unit more than it
        (2**63 - 1, 3, "POSITION_BASED", timedelta(days=7)),
    ],
)
def test_negative_remainders_take_units_back_like_the_engine(value, n, model, half_life):
    tp = tps([(f"t{i}", "u", T0 + i * US, "x") for i in range(n)])
    cv = convs([("c", "u", T0 + DAY, value)])
    ours = engine_links(tp, cv, models=[model], half_life=half_life)
    theirs = canonical(attribute_duckdb(tp, cv, models=[model], half_life=half_life))
    assert_same_links(ours, theirs)
    assert theirs["credited_value_micros"].sum() == value
    # the first query refuses such a conversion, and says which query can split it
    sql = links_query([model], reset_after_conversion=True, keys=["anon_id"])
    with duckdb.connect() as con:
        con.register("tp_in", tp.to_arrow())
        con.register("cv_in", cv.to_arrow())
        params = {
            "lookback_us": 30 * 86_400_000_000,
            "half_life_us": float(half_life // US),
            "pb_first": 0.4,
            "pb_last": 0.4,
            "pb_first2": 0.5,
            "pb_last2": 0.5,
            "pb_mid": 1.0 - 0.4 - 0.4,
        }
        with pytest.raises(duckdb.Error, match="needs negative_remainders=True"):
            con.sql(sql, params={k: v for k, v in params.items() if f"${k}" in sql}).fetchall()


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown model"):
        attribute_duckdb(JOURNEY_TP, JOURNEY_CV, models=["MARKOV"])
    assert attribute_duckdb(JOURNEY_TP, JOURNEY_CV, models=[]).height == 0
    no_links = tps([("a", "u", T0 + DAY, "x")]), convs([("c", "u", T0, 1)])
    for unpivot in ("polars", "sql"):
        assert dict(attribute_duckdb(*no_links, unpivot=unpivot).schema) == LINKS_SCHEMA
    no_value = JOURNEY_CV.drop("value_micros")
    links = attribute_duckdb(JOURNEY_TP, no_value)
    assert links.height == 3 * len(ALL_MODELS) and links["credited_value_micros"].sum() == 0
