"""attribute_spark / journeys_spark on a real local Spark equal attribute() / build_journeys() on one machine.

One SparkSession for the module (local[2], UI off, 2 shuffle partitions). Without pyspark or Java the tests
skip, unless OPTIQ_REQUIRE_SPARK=1 (CI), which fails them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import optiq_engine as oq
from tests.support.spark import local_session

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
HEURISTIC = list(oq.models.HEURISTIC_MODELS)
DATA_DRIVEN = ["MARKOV", "SHAPLEY", "DATA_DRIVEN"]
ALL_MODELS = HEURISTIC + DATA_DRIVEN
KEY = ["model", "conversion_id", "touchpoint_id"]


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    yield from local_session()


def _strings(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String))


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    """2 000 synthetic users, plus conversions of users without touchpoints and one outside its window."""
    d = oq.synthetic.generate(n_users=2_000, seed=11)
    tp, cv = _strings(d.touchpoints), _strings(d.conversions)
    first = cv.row(0, named=True)
    extra = pl.DataFrame(
        {
            "conversion_id": ["cv_ghost_1", "cv_ghost_2", "cv_late"],
            "anon_id": ["ghost_1", "ghost_2", first["anon_id"]],
            "occurred_at": [first["occurred_at"], first["occurred_at"], first["occurred_at"] + timedelta(days=400)],
            "value_micros": [5_000_000, 0, 7_000_000],
            "name": ["purchase"] * 3,
            "organization_id": [first["organization_id"]] * 3,
            "site_id": [first["site_id"]] * 3,
        },
        schema=cv.schema,
    )
    return tp, pl.concat([cv, extra])


def _frame(spark, frame: pl.DataFrame, input_partitions: int | None = None):
    sdf = spark.createDataFrame(frame.to_arrow())
    return sdf if input_partitions is None else sdf.repartition(input_partitions)  # round robin: users spread


def _collect(sdf) -> pl.DataFrame:
    out = pl.from_arrow(sdf.toArrow())
    assert isinstance(out, pl.DataFrame)
    return out


def assert_links_equal(expected: pl.DataFrame, got: pl.DataFrame) -> None:
    """Same rows (ids, model, position, count, channel, credited micros exactly), weights within 1e-12."""
    a = _strings(expected).sort(KEY)
    b = _strings(got.select(expected.columns)).sort(KEY)
    assert a.height == b.height
    exact = [c for c in a.columns if c != "weight"]
    assert a.select(exact).equals(b.select(exact))
    np.testing.assert_allclose(b.get_column("weight").to_numpy(), a.get_column("weight").to_numpy(), rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def expected(data) -> oq.AttributionResult:
    tp, cv = data
    return oq.attribute(tp, cv, models=ALL_MODELS)


def test_import_optiq_engine_does_not_import_pyspark() -> None:
    code = "import sys, optiq_engine; assert 'pyspark' not in sys.modules, 'pyspark imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("partitions", "input_partitions"), [(1, None), (2, None), (3, 5)])
def test_attribute_spark_equals_attribute(spark, data, expected, partitions, input_partitions) -> None:
    """Every heuristic and data-driven model; 1, 2, 3 partitions; shuffled input spread over input parts."""
    from optiq_engine.spark import attribute_spark

    tp, cv = data
    result = attribute_spark(
        _frame(spark, tp, input_partitions),
        _frame(spark, cv, input_partitions),
        models=ALL_MODELS,
        partitions=partitions,
    ).persist()
    try:
        assert_links_equal(expected.links, _collect(result.links))
        key = ["conversion_id", "model"]
        unattributed = _collect(result.unattributed).sort(key)
        assert unattributed.equals(expected.unattributed.select(unattributed.columns).sort(key))
        # baseline conversions: a data-driven model credits them to no channel (docs/data_driven.md §5)
        assert set(unattributed.get_column("reason")) == {"no_touchpoints", "outside_window", "baseline_conversion"}
        assert unattributed.filter(pl.col("reason") == "baseline_conversion").get_column("model").null_count() == 0
        credit = _collect(result.credit).sort("model", "channel")
        want = _strings(expected.credit).sort("model", "channel")
        assert credit.select("model", "channel", "value_micros").equals(want.select("model", "channel", "value_micros"))
        np.testing.assert_allclose(
            credit["conversions"].to_numpy(), want["conversions"].to_numpy(), rtol=1e-12, atol=1e-9
        )
        for name in DATA_DRIVEN:  # fitted once on the driver, on the sum of the partitions' path tables
            got = result.fitted[name].channel_credit.sort("channel")
            ref = expected.fitted[name].channel_credit.with_columns(pl.col("channel").cast(pl.String)).sort("channel")
            np.testing.assert_allclose(got["share"].to_numpy(), ref["share"].to_numpy(), rtol=0, atol=1e-12)
            # the links' multipliers, balanced once on the driver (docs/spark.md "Data-driven credit")
            mine, theirs = result.fitted[name].balance, expected.fitted[name].balance
            np.testing.assert_allclose(mine.scale_for(theirs.channels), theirs.scale, rtol=1e-9)
            # channel_credit's conversions: the fit's allocation on Spark, the links' sums in attribute()
            n = result.fitted[name].paths.total_conversions
            np.testing.assert_allclose(got["conversions"].to_numpy(), got["share"].to_numpy() * n, rtol=1e-12)
            if expected.fitted[name].credit_gap < 1e-9:
                sums = credit.filter(pl.col("model") == name).join(got, on="channel", how="left", suffix="_fit")
                np.testing.assert_allclose(
                    sums["conversions"].to_numpy(), sums["conversions_fit"].fill_null(0.0).to_numpy(), rtol=1e-8
                )
    finally:
        result.unpersist()


def test_empty_partitions_and_one_user(spark) -> None:
    """8 partitions for 3 users: most partitions are empty; a user with conversions only is unattributed."""
    from optiq_engine.spark import attribute_spark

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["a1", "a2", "a3", "b1"],
            "anon_id": ["a", "a", "a", "b"],
            "occurred_at": [t0, t0 + timedelta(hours=1), t0 + timedelta(hours=1), t0],
            "channel": ["email", "direct", "display", "email"],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["ca", "cb", "cc"],
            "anon_id": ["a", "b", "c"],
            "occurred_at": [t0 + timedelta(days=1)] * 3,
            "value_micros": [10_000_001, 3, 5],
        }
    )
    models = ALL_MODELS
    want = oq.attribute(tp, cv, models=models)
    result = attribute_spark(_frame(spark, tp), _frame(spark, cv), models=models, partitions=8)
    assert_links_equal(want.links, _collect(result.links))
    unattributed = _collect(result.unattributed)
    assert unattributed.filter(pl.col("model").is_null()).get_column("conversion_id").to_list() == ["cc"]
    key = ["conversion_id", "model"]  # and the baseline conversions of data-driven models, as in memory
    assert unattributed.sort(key).equals(want.unattributed.select(unattributed.columns).sort(key))


def test_credit_beyond_int64_is_null_across_partitions(spark) -> None:
    """Eight users' 2**61 micros on one channel sum past int64 only across partitions: null, as attribute()
    gives; never wrapped, and never a partial sum when one partition's own sum was already null."""
    from optiq_engine.spark import attribute_spark

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    users = [f"u{i}" for i in range(8)] + ["small1", "small2", "big1", "big2"]
    tp = pl.DataFrame(
        {
            "touchpoint_id": [f"t_{u}" for u in users],
            "anon_id": users,
            "occurred_at": [t0] * len(users),
            "channel": ["a"] * 8 + ["b", "b", "c", "c"],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": [f"c_{u}" for u in users],
            "anon_id": users,
            "occurred_at": [t0 + timedelta(hours=1)] * len(users),
            "value_micros": [2**61] * 8 + [3, 2**63 - 1, 2**62, 2**62],
        }
    )
    want = oq.attribute(tp, cv, models=["LINEAR"]).credit.with_columns(pl.col("model", "channel").cast(pl.String))
    assert want.get_column("value_micros").to_list() == [None, None, None]  # a: 2**64, b: 2**63 + 2, c: 2**63
    for partitions in (1, 8):
        result = attribute_spark(_frame(spark, tp), _frame(spark, cv), models=["LINEAR"], partitions=partitions)
        got = _collect(result.credit).sort("model", "channel")
        assert got.select("model", "channel", "value_micros").equals(want.select("model", "channel", "value_micros"))
        assert got.get_column("conversions").to_list() == [8.0, 2.0, 2.0]
    small = cv.with_columns(pl.lit(2**58, pl.Int64).alias("value_micros"))
    got = _collect(attribute_spark(_frame(spark, tp), _frame(spark, small), models=["LINEAR"], partitions=8).credit)
    assert got.sort("channel").get_column("value_micros").to_list() == [8 * 2**58, 2 * 2**58, 2 * 2**58]


def test_narrow_shuffle_derives_missing_channels_and_keeps_the_checks(spark, data) -> None:
    """Channels missing in some rows (or the whole column) are derived before the shuffle, as attribute()
    derives them; left-out contract columns keep their type check; invalid rows still raise."""
    from optiq_engine.spark import attribute_spark

    tp, cv = data
    models = ["LINEAR", "LAST_NON_DIRECT"]
    some_null = tp.with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.col("channel")).alias("channel")
    )
    # labels with surrounding (Unicode) whitespace are stripped, blank ones derived, as attribute() does
    i = pl.int_range(pl.len()) % 5
    label = pl.when(i == 1).then(pl.lit(" \u00a0")).when(i == 2).then(pl.lit("\t") + pl.col("channel") + " ")
    padded = some_null.with_columns(label.otherwise(pl.col("channel")).alias("channel"))
    scv = _frame(spark, cv)
    for frame in (some_null, tp.drop("channel"), padded):
        want = oq.attribute(frame, cv, models=models)
        result = attribute_spark(_frame(spark, frame), scv, models=models, partitions=3)
        assert_links_equal(want.links, _collect(result.links))
        # the touchpoints of groups without a conversion are left out before the shuffle (prefilter)
        assert result.timings["touchpoints"] == _converting(tp, cv).height and result.timings["partitions"] == 3

    bad_type = tp.with_columns(pl.lit(1.5).alias("utm_campaign"))
    with pytest.raises(oq.errors.SchemaError, match="'utm_campaign' must hold strings"):
        oq.attribute(bad_type, cv)
    with pytest.raises(oq.errors.SchemaError, match="'utm_campaign' must hold strings"):
        attribute_spark(_frame(spark, bad_type), scv)  # on the driver, before any job

    dollars = cv.drop("value_micros").with_columns(revenue=pl.lit(49.99))  # dropped before the shuffle: refused
    with pytest.raises(oq.errors.SchemaError, match="'revenue' looks like money"):
        attribute_spark(_frame(spark, tp), _frame(spark, dollars))
    with pytest.raises(oq.errors.ConfigError, match="value_micros in integer micros only"):
        attribute_spark(_frame(spark, tp), _frame(spark, dollars), value_column="revenue", value_unit="currency")

    null_id = tp.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise("touchpoint_id").alias("touchpoint_id")
    )
    with pytest.raises(Exception, match="invalid touchpoints row"):
        attribute_spark(_frame(spark, null_id), scv, models=models, partitions=2).links.count()


def _converting(tp: pl.DataFrame, cv: pl.DataFrame) -> pl.DataFrame:
    keys = ["organization_id", "site_id", "anon_id"]
    return tp.join(cv.select(keys).unique(), on=keys, how="semi")


def test_prefilter_leaves_out_unconverted_groups_but_never_a_bad_row(spark, data) -> None:
    """Heuristic models only: the touchpoints of groups without a conversion do not cross the shuffle, the
    links are the same; a row that validation refuses still reaches it, whatever its group."""
    from optiq_engine.spark import attribute_spark

    tp, cv = data
    kept = _converting(tp, cv)
    assert 0 < kept.height < tp.height  # the data have users without a conversion
    want = oq.attribute(tp, cv, models=HEURISTIC)
    runs = {}
    for prefilter in (True, False):
        result = attribute_spark(
            _frame(spark, tp), _frame(spark, cv), models=HEURISTIC, partitions=2, prefilter=prefilter
        )
        assert_links_equal(want.links, _collect(result.links))
        runs[prefilter] = result.timings["touchpoints"]
    assert runs == {True: kept.height, False: tp.height}
    # not for data-driven models: they are fitted on the journeys that did not convert too
    dd = attribute_spark(_frame(spark, tp), _frame(spark, cv), models=["LINEAR", "MARKOV"], partitions=2)
    dd.links.count()
    assert dd.timings["touchpoints"] == tp.height

    lonely = tp.join(kept, on="touchpoint_id", how="anti").row(0, named=True)["touchpoint_id"]
    for bad in (
        pl.lit(None),
        pl.lit("  "),
        pl.lit("\t"),
        pl.lit("\u3000"),
    ):  # null or blank, in a group that never converts
        broken = tp.with_columns(
            pl.when(pl.col("touchpoint_id") == lonely).then(bad).otherwise("touchpoint_id").alias("touchpoint_id")
        )
        with pytest.raises(Exception, match="invalid touchpoints row"):
            attribute_spark(_frame(spark, broken), _frame(spark, cv), models=HEURISTIC, partitions=1).links.count()


def test_bootstrap_intervals_do_not_depend_on_partitioning(spark, data) -> None:
    from optiq_engine.spark import attribute_spark

    tp, cv = data
    models = [oq.models.Markov(bootstrap=25, seed=3), oq.models.Shapley(bootstrap=25, seed=3)]
    want = oq.attribute(tp, cv, models=models)
    stp, scv = _frame(spark, tp), _frame(spark, cv)
    for partitions in (1, 3):
        fits = attribute_spark(stp, scv, models=models, partitions=partitions).fitted
        for name in ("MARKOV", "SHAPLEY"):
            got = fits[name].channel_credit.sort("channel")
            ref = want.fitted[name].channel_credit.with_columns(pl.col("channel").cast(pl.String)).sort("channel")
            np.testing.assert_allclose(got["ci_low"].to_numpy(), ref["ci_low"].to_numpy(), rtol=0, atol=1e-12)
            np.testing.assert_allclose(got["ci_high"].to_numpy(), ref["ci_high"].to_numpy(), rtol=0, atol=1e-12)


def _events(tp: pl.DataFrame, cv: pl.DataFrame) -> pl.DataFrame:
    """Tracking events from touchpoints (page views with UTM / click ids) and conversions, plus bare views."""
    views = tp.select(
        pl.col("touchpoint_id").alias("event_id"),
        "anon_id",
        "occurred_at",
        pl.lit("PAGE_VIEW").alias("type"),
        "organization_id",
        "site_id",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "gclid",
        "fbclid",
        "ttclid",
    )
    bare = views.gather_every(3).with_columns(
        (pl.col("event_id") + "_x").alias("event_id"),
        (pl.col("occurred_at") + pl.duration(minutes=45)).alias("occurred_at"),
        pl.lit(None, dtype=pl.String).alias("utm_source"),
        pl.lit(None, dtype=pl.String).alias("utm_medium"),
    )
    conversions = cv.select(
        pl.col("conversion_id").alias("event_id"),
        "anon_id",
        "occurred_at",
        pl.lit("CONVERSION").alias("type"),
        "organization_id",
        "site_id",
        "value_micros",
        "name",
    )
    return pl.concat([views, bare, conversions], how="diagonal")


@pytest.mark.parametrize("partitions", [1, 3])
def test_journeys_spark_equals_build_journeys(spark, data, partitions) -> None:
    from optiq_engine.spark import journeys_spark

    events = _events(*data)
    want = oq.build_journeys(events)
    result = journeys_spark(_frame(spark, events, 4), partitions=partitions).persist()
    try:
        assert result.as_of == want.as_of
        journeys = _collect(result.journeys).sort("journey_id")
        assert journeys.equals(want.journeys.sort("journey_id"))
        steps = _collect(result.journey_events).sort("journey_id", "sequence_number")
        assert steps.equals(want.journey_events.sort("journey_id", "sequence_number"))
        sessions = _collect(result.sessions).sort("event_id")
        assert sessions.equals(want.sessions.sort("event_id"))
    finally:
        result.unpersist()


def _write_by_date(frame: pl.DataFrame, root: Path) -> None:
    """A hive-partitioned dataset (date=YYYY-MM-DD/part-0.parquet)."""
    dated = frame.with_columns(pl.col("occurred_at").dt.date().alias("date"))
    for (day,), part in dated.group_by("date"):
        target = root / f"date={day}"
        target.mkdir(parents=True)
        part.drop("date").write_parquet(target / "part-0.parquet")


def test_parquet_in_and_out_by_date(spark, data, tmp_path) -> None:
    """Hive-partitioned Parquet in, date-partitioned links out; a second run replaces them with the same rows."""
    from optiq_engine.spark import attribute_spark, read_parquet, write_result

    tp, cv = data
    # The data's first 10 days (about 10 dates in and out, not 90: the layouts are the point, not the size),
    # and the conversions without touchpoints (so that every output has rows).
    cut = tp.get_column("occurred_at").min() + timedelta(days=10)
    tp = tp.filter(pl.col("occurred_at") < cut)
    cv = cv.filter((pl.col("occurred_at") < cut) | pl.col("conversion_id").str.starts_with("cv_ghost"))
    _write_by_date(tp, tmp_path / "tp")
    _write_by_date(cv, tmp_path / "cv")
    models = ["LINEAR", "MARKOV"]
    want = oq.attribute(tp, cv, models=models)
    out = tmp_path / "out"
    for _ in range(2):
        result = attribute_spark(
            read_parquet(spark, tmp_path / "tp"), read_parquet(spark, tmp_path / "cv"), models=models, link_dates=True
        )
        counts = write_result(result, out)
        assert counts["links"] == want.links.height
        assert counts["unattributed"] == want.unattributed.height
    assert sorted(p.name for p in out.iterdir()) == ["credit", "links", "unattributed"]
    assert any(p.name.startswith("date=") for p in (out / "links").iterdir())
    links = pl.read_parquet(out / "links" / "**" / "*.parquet", hive_partitioning=True)
    assert_links_equal(want.links, links)
    dates = _strings(want.links).join(
        cv.select("conversion_id", pl.col("occurred_at").dt.date().alias("date")), on="conversion_id"
    )
    joined = links.join(dates.select(*KEY, "date"), on=KEY, suffix="_want")
    assert joined.height == links.height and (joined["date"] == joined["date_want"]).all()


def test_an_empty_output_is_written_with_its_schema(spark, tmp_path) -> None:
    """One conversion, fully attributed: ``unattributed/`` has no row, and is still a Parquet dataset with its
    columns (it was a directory without a file, on which the CLI failed with UNABLE_TO_INFER_SCHEMA)."""
    from optiq_engine.spark import attribute_spark, write_result

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["t1", "t2"],
            "anon_id": ["u1", "u1"],
            "channel": ["email", "display"],
            "occurred_at": [t0 - timedelta(days=2), t0 - timedelta(days=1)],
        }
    )
    cv = pl.DataFrame({"conversion_id": ["c1"], "anon_id": ["u1"], "occurred_at": [t0], "value_micros": [1_000_000]})
    result = attribute_spark(
        spark.createDataFrame(tp.to_arrow()), spark.createDataFrame(cv.to_arrow()), models=["LINEAR"], link_dates=True
    )
    counts = write_result(result, tmp_path / "out")
    assert counts == {"links": 2, "unattributed": 0, "credit": 2}
    empty = pl.read_parquet(tmp_path / "out" / "unattributed" / "*.parquet")
    assert empty.height == 0 and {"conversion_id", "reason", "model"} <= set(empty.columns)
    assert spark.read.parquet(str(tmp_path / "out" / "unattributed")).count() == 0


def test_spark_io_errors_are_the_local_ones_and_a_failed_move_keeps_the_previous_dataset(
    spark, tmp_path, monkeypatch
) -> None:
    """An unreadable input is a SourceError and a dataset that cannot be moved into place a SinkError, as in
    the local engine (they were InputError and OSError); the dataset it replaced is moved back, not left
    under a hidden ``.old-`` name."""
    from optiq_engine.spark import attribute_spark, io, read_parquet, write_result

    with pytest.raises(oq.errors.SourceError, match="cannot read Parquet from"):
        read_parquet(spark, tmp_path / "missing")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    tp = pl.DataFrame({"touchpoint_id": ["t1"], "anon_id": ["u1"], "channel": ["email"], "occurred_at": [t0]})
    cv = pl.DataFrame({"conversion_id": ["c1"], "anon_id": ["u1"], "occurred_at": [t0], "value_micros": [7]})
    result = attribute_spark(spark.createDataFrame(tp.to_arrow()), spark.createDataFrame(cv.to_arrow()))
    write_result(result, tmp_path / "out")
    before = pl.read_parquet(tmp_path / "out" / "links" / "*.parquet")
    move = io._FileSystem.rename

    def failing(self, src: str, dst: str) -> None:
        if ".staging-" in src and dst.endswith("/links"):
            raise oq.errors.SinkError(f"could not move {src} to {dst}")
        move(self, src, dst)

    monkeypatch.setattr(io._FileSystem, "rename", failing)
    with pytest.raises(oq.errors.SinkError, match="could not move"):
        write_result(result, tmp_path / "out")
    assert pl.read_parquet(tmp_path / "out" / "links" / "*.parquet").equals(before)
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_cli_attribute_engine_spark(spark, data, tmp_path) -> None:
    from typer.testing import CliRunner

    from optiq_engine.cli import app

    tp, cv = data
    tp.write_parquet(tmp_path / "tp.parquet")
    cv.write_parquet(tmp_path / "cv.parquet")
    out = tmp_path / "out"
    args = ["attribute", "--touchpoints", str(tmp_path / "tp.parquet"), "--conversions", str(tmp_path / "cv.parquet")]
    args += ["--out", str(out), "-m", "LINEAR", "-m", "SHAPLEY", "--engine", "spark", "--master", "local[2]"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    want = oq.attribute(tp, cv, models=["LINEAR", "SHAPLEY"])
    assert_links_equal(want.links, pl.read_parquet(out / "links" / "**" / "*.parquet", hive_partitioning=True))
    assert f"wrote {want.links.height:,} links" in run.output.replace("\n", " ")
