"""The optiq command line: demo, attribute on Parquet files, clear one-line errors and exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def parquet_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, oq.synthetic.SyntheticData]:
    d = tmp_path_factory.mktemp("in")
    data = oq.synthetic.generate(n_users=500, seed=3)
    data.touchpoints.write_parquet(d / "tp.parquet")
    data.conversions.write_parquet(d / "cv.parquet")
    return d / "tp.parquet", d / "cv.parquet", data


def test_demo_prints_credit_table_and_timings() -> None:
    result = runner.invoke(app, ["demo", "--users", "2000"])
    assert result.exit_code == 0, result.output
    assert "Attributed conversions by channel and model" in result.output
    assert "LINEAR" in result.output and "direct" in result.output and "attribute" in result.output


def test_attribute_writes_parquet_equal_to_the_library(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, data = parquet_inputs
    out = tmp_path / "out"
    result = runner.invoke(app, ["attribute", "--touchpoints", str(tp), "--conversions", str(cv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    links = pl.read_parquet(out / "links.parquet")
    expected = oq.attribute(data.touchpoints, data.conversions).links
    key = ["model", "conversion_id", "position"]
    assert (
        links.with_columns(pl.col("model", "channel").cast(pl.String))
        .sort(key)
        .equals(expected.with_columns(pl.col("model", "channel").cast(pl.String)).sort(key))
    )
    assert {p.name for p in out.iterdir()} == {"links.parquet", "credit.parquet", "unattributed.parquet"}


def test_attribute_with_chosen_models_and_lookback(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, _ = parquet_inputs
    args = ["attribute", "--touchpoints", str(tp), "--conversions", str(cv), "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "-m", "linear", "-m", "TIME_DECAY", "--lookback-days", "7"])
    assert result.exit_code == 0, result.output
    models = pl.read_parquet(tmp_path / "links.parquet").get_column("model").cast(pl.String).unique().sort()
    assert models.to_list() == ["LINEAR", "TIME_DECAY"]


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["attribute", "--touchpoints", str(tmp_path / "nope.parquet"), "--conversions", "x", "--out", "o"]
    )
    assert result.exit_code == 2
    assert "no such file" in result.output and "Traceback" not in result.output


def test_wrong_columns_name_the_column_and_suggest(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, data = parquet_inputs
    bad = tmp_path / "bad.parquet"
    data.touchpoints.rename({"anon_id": "anonid"}).write_parquet(bad)
    result = runner.invoke(
        app, ["attribute", "--touchpoints", str(bad), "--conversions", str(cv), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "'anon_id'" in result.output and "anonid" in result.output


def test_unknown_model_lists_valid_choices(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, _ = parquet_inputs
    args = ["attribute", "--touchpoints", str(tp), "--conversions", str(cv), "--out", str(tmp_path), "-m", "BOGUS"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "BOGUS" in result.output and "LINEAR" in result.output


def test_bad_option_value_is_rejected(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, _ = parquet_inputs
    args = ["attribute", "--touchpoints", str(tp), "--conversions", str(cv), "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--lookback-days", "-1"])
    assert result.exit_code == 2
    assert "lookback" in result.output


def test_invalid_rows_fail_or_are_quarantined(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, data = parquet_inputs
    bad_cv = tmp_path / "cv_bad.parquet"
    data.conversions.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(-1).otherwise(pl.col("value_micros")).alias("value_micros")
    ).write_parquet(bad_cv)
    args = ["attribute", "--touchpoints", str(tp), "--conversions", str(bad_cv), "--out", str(tmp_path / "o")]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 2 and "negative value_micros: 3" in failed.output
    ok = runner.invoke(app, [*args, "--quarantine"])
    assert ok.exit_code == 0, ok.output
    assert "3 quarantined rows" in ok.output
    q = pl.read_parquet(tmp_path / "o" / "quarantined_conversions.parquet")
    assert q.height == 3 and q.get_column("reason").unique().to_list() == ["negative value_micros"]


def test_partitions_give_the_same_links_and_credit(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, data = parquet_inputs
    base = ["attribute", "--touchpoints", str(tp), "--conversions", str(cv)]
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "one")]).exit_code == 0
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "four"), "--partitions", "4"])
    assert result.exit_code == 0, result.output
    key = ["model", "conversion_id", "position"]

    def links(path: Path) -> pl.DataFrame:
        return pl.read_parquet(path).with_columns(pl.col("model", "channel").cast(pl.String)).sort(key)

    assert len(list((tmp_path / "four" / "links").iterdir())) == 4
    assert links(tmp_path / "four" / "links").equals(links(tmp_path / "one" / "links.parquet"))
    one = pl.read_parquet(tmp_path / "one" / "credit.parquet").with_columns(pl.col("model", "channel").cast(pl.String))
    four = pl.read_parquet(tmp_path / "four" / "credit.parquet").with_columns(
        pl.col("model", "channel").cast(pl.String)
    )
    joined = one.join(four, on=["model", "channel"])
    assert joined.height == one.height
    assert (joined["value_micros"] == joined["value_micros_right"]).all()
    assert ((joined["conversions"] - joined["conversions_right"]).abs() < 1e-9).all()


def test_failed_run_leaves_previous_results_intact(parquet_inputs, tmp_path: Path) -> None:
    tp, cv, data = parquet_inputs
    out = tmp_path / "out"
    assert (
        runner.invoke(
            app, ["attribute", "--touchpoints", str(tp), "--conversions", str(cv), "--out", str(out)]
        ).exit_code
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.parquet"
    data.conversions.with_columns(pl.lit(-1).alias("value_micros")).write_parquet(bad)
    failed = runner.invoke(app, ["attribute", "--touchpoints", str(tp), "--conversions", str(bad), "--out", str(out)])
    assert failed.exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(["-m", "BOGUS"], "BOGUS"), (["--lookback-days", "-1"], "lookback"), (["--engine", "dask"], "--engine")],
)
def test_user_mistakes_end_in_one_error_line_without_traceback(parquet_inputs, tmp_path: Path, extra, expected) -> None:
    tp, cv, _ = parquet_inputs
    args = ["attribute", "--touchpoints", str(tp), "--conversions", str(cv), "--out", str(tmp_path), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0] and result.stderr.rstrip().endswith(errors[0])
    assert "Traceback" not in result.output
    if extra[0] != "--engine":  # raised in the library, so --debug has a traceback to show
        assert "Traceback" in runner.invoke(app, ["--debug", *args]).output


def test_top_level_help_lists_debug_and_every_command() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=80)
    assert result.exit_code == 0
    assert "--debug" in result.output and "OPTIQ_DEBUG" in result.output
    for command in ("demo", "attribute", "run", "serve", "db", "alerts", "keys"):
        assert f"  {command} " in result.output


def test_warmup_prints_each_stage_and_its_compile_seconds() -> None:
    result = runner.invoke(app, ["warmup"])
    assert result.exit_code == 0, result.output
    for stage in ("attribute: heuristic models", "attribute: path rules", "journeys", "touchpoints"):
        assert stage in result.output
    assert "data-driven" not in result.output
    assert re.search(r"warmup [0-9.]+s, of which compiling [0-9.]+s", result.output)


@pytest.mark.slow
def test_warmup_data_driven_adds_the_fits() -> None:
    result = runner.invoke(app, ["warmup", "--data-driven"])
    assert result.exit_code == 0, result.output
    for model in ("MARKOV", "MARKOV order 2", "SHAPLEY", "DATA_DRIVEN"):
        assert f"data-driven: {model}" in result.output


# A first attribute() and build_journeys() on inputs other than warmup's own; prints the functions compiled.
_FIRST_CALLS = textwrap.dedent(
    """
    import logging
    from datetime import datetime, timedelta, UTC
    import polars as pl
    import optiq_engine as oq
    from optiq_engine.kernels._jit import compile_stats

    logging.basicConfig(level=logging.INFO)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    n = 300
    tp = pl.DataFrame({
        "touchpoint_id": [f"t{i}" for i in range(n)],
        "anon_id": [f"u{i % 37}" for i in range(n)],
        "occurred_at": [t0 + timedelta(minutes=(i * 7919) % 20000) for i in range(n)],
        "channel": [("paid_search", "email", "direct", "social")[i % 4] for i in range(n)],
    })
    cv = pl.DataFrame({
        "conversion_id": [f"c{i}" for i in range(40)],
        "anon_id": [f"u{i}" for i in range(40)],
        "occurred_at": [t0 + timedelta(minutes=15000 + i) for i in range(40)],
        "value_micros": [1_000_000 * i for i in range(40)],
    })
    events = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "anon_id": [f"u{i % 37}" for i in range(n)],
        "occurred_at": [t0 + timedelta(minutes=(i * 7919) % 20000) for i in range(n)],
        "type": ["CONVERSION" if i % 9 == 0 else "PAGE_VIEW" for i in range(n)],
    })
    oq.attribute(tp, cv, models=list(oq.models.HEURISTIC_MODELS))
    oq.build_journeys(events)
    print("compiled", compile_stats().functions)
    """
)


@pytest.mark.slow
def test_after_warmup_a_first_attribute_in_a_fresh_process_compiles_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"), OPTIQ_NUMBA_CACHE="1")
    env.pop("OPTIQ_DEBUG", None)
    warm = subprocess.run(
        [sys.executable, "-m", "optiq_engine.cli", "warmup"], env=env, capture_output=True, text=True, timeout=600
    )
    assert warm.returncode == 0, warm.stderr
    assert "compiling Numba kernels on first use" in warm.stderr  # a fresh cache: the notice, and compiling
    assert int(re.search(r"\(([0-9,]+) functions", warm.stdout).group(1).replace(",", "")) > 0  # type: ignore[union-attr]
    first = subprocess.run([sys.executable, "-c", _FIRST_CALLS], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[-1] == "0", first.stdout + first.stderr
    assert "compiling Numba kernels" not in first.stderr


def test_hints_name_the_command_options_not_python_keywords(parquet_inputs, tmp_path: Path) -> None:
    """A float value_micros said "pass value_unit='currency'" to a CLI user, who types --value-unit currency."""
    tp, cv, data = parquet_inputs
    dollars = data.conversions.with_columns(pl.col("value_micros") / 1e6)
    dollars.write_parquet(tmp_path / "cv.parquet")
    args = ["attribute", "--touchpoints", str(tp), "--conversions", str(tmp_path / "cv.parquet")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--value-unit currency" in result.output and "--value-column value_micros" in result.output
    assert "value_unit=" not in result.output
    dates = data.touchpoints.with_columns(pl.col("occurred_at").dt.strftime("%m/%d/%Y %H:%M"))
    dates.write_csv(tmp_path / "tp.csv")
    args = ["attribute", "--touchpoints", str(tmp_path / "tp.csv"), "--conversions", str(cv)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--timestamp-format '%m/%d/%Y %H:%M'" in result.output.replace("\n", " ")
    with pytest.raises(oq.errors.SchemaError, match="value_unit='currency'"):  # the library speaks Python
        oq.attribute(data.touchpoints, dollars)


def test_csv_decimals_reach_the_exact_conversion_as_text(tmp_path: Path) -> None:
    """CSV amounts went through float64: 12345678901.123456 became 12345678901123455 micros, silently."""
    (tmp_path / "tp.csv").write_text("touchpoint_id,anon_id,occurred_at,channel\nt1,u1,2024-01-02T00:00:00Z,email\n")
    (tmp_path / "cv.csv").write_text(
        "conversion_id,anon_id,occurred_at,revenue\nc1,u1,2024-01-06T00:00:00Z,12345678901.123456\n"
    )
    args = ["attribute", "--touchpoints", str(tmp_path / "tp.csv"), "--conversions", str(tmp_path / "cv.csv")]
    args += ["--out", str(tmp_path / "out"), "-m", "LAST_TOUCH", "--value-column", "revenue"]
    result = runner.invoke(app, [*args, "--value-unit", "currency"])
    assert result.exit_code == 0, result.output
    links = pl.read_parquet(tmp_path / "out" / "links.parquet")
    assert links.get_column("credited_value_micros").to_list() == [12_345_678_901_123_456]
    micros = runner.invoke(app, [*args, "--value-unit", "micros"])  # decimals are no micros: refused
    assert micros.exit_code == 2 and "micros" in micros.output
