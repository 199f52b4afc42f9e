"""Path rules of the heuristic models (docs/attribution.md "Path rules"): the worked example, Snowplow's own
path-transformation cases through attribute(), the engine against the reference on random inputs, errors,
attributionSettings and the CLI."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numba
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.batch import settings_from_json
from optiq_engine.cli import app
from optiq_engine.config import DROP_DIRECT, TOUCH_RULES
from optiq_engine.kernels import path_rules
from tests.reference.attribution import check_invariants, split_value
from tests.reference.path_rules import attribute_with_path_rules, kept_indices, transform_path
from tests.support.adapters import conversions_frame, model_object, touchpoints_frame
from tests.support.strategies import Case, cases

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HEURISTICS = ["FIRST_TOUCH", "LAST_TOUCH", "LAST_NON_DIRECT", "LINEAR", "POSITION_BASED", "TIME_DECAY"]


def journey(path: list[str], value_micros: int = 66_500_000) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One user's touches on ``path`` (a day apart, ids t0, t1, ...) and a conversion after the last."""
    touchpoints = pl.DataFrame(
        {
            "touchpoint_id": [f"t{i}" for i in range(len(path))],
            "anon_id": ["ann"] * len(path),
            "occurred_at": [T0 + timedelta(days=i) for i in range(len(path))],
            "channel": path,
        },
        schema={
            "touchpoint_id": pl.String,
            "anon_id": pl.String,
            "occurred_at": pl.Datetime("us", "UTC"),
            "channel": pl.String,
        },
    )
    conversions = pl.DataFrame(
        {
            "conversion_id": ["o1"],
            "anon_id": ["ann"],
            "occurred_at": [T0 + timedelta(days=len(path))],
            "value_micros": [value_micros],
        }
    )
    return touchpoints, conversions


def credited_path(path: list[str], **options) -> list[str]:
    """The channels of the touches LINEAR credits (weight > 0), in position order."""
    links = oq.attribute(*journey(path), models=["LINEAR"], **options).links.sort("position")
    assert links.get_column("position").to_list() == list(range(1, len(path) + 1))  # every touch keeps a link
    return links.filter(pl.col("weight") > 0).get_column("channel").cast(pl.String).to_list()


# --- the worked example of issue 27 ------------------------------------------------------------------------


def test_linear_on_a_repeated_channel_collapses_to_one_share_per_exposure() -> None:
    """display > organic_search > organic_search, 66.50: 22.17 / 44.33 by touch, 33.25 / 33.25 by exposure."""
    tp, cv = journey(["display", "organic_search", "organic_search"])
    raw = oq.attribute(tp, cv, models=["LINEAR"]).credit
    exposure = oq.attribute(tp, cv, models=["LINEAR"], touch_rule="collapse_repeats")
    by_channel = dict(exposure.credit.select(pl.col("channel").cast(pl.String), "value_micros").iter_rows())
    assert by_channel == {"display": 33_250_000, "organic_search": 33_250_000}
    assert dict(raw.select(pl.col("channel").cast(pl.String), "value_micros").iter_rows()) == {
        "display": 22_166_666,
        "organic_search": 44_333_334,
    }
    links = exposure.links.sort("position")
    assert links.get_column("weight").to_list() == [0.5, 0.5, 0.0]  # the repeat keeps its link, weight 0
    assert links.get_column("credited_value_micros").to_list() == [33_250_000, 33_250_000, 0]
    assert links.get_column("touchpoint_count").to_list() == [3, 3, 3]  # n counts the window's touches


def test_last_touch_under_collapse_repeats_credits_the_first_touch_of_the_last_exposure() -> None:
    tp, cv = journey(["email", "display", "display"])
    links = oq.attribute(tp, cv, models=["LAST_TOUCH"], touch_rule="collapse_repeats").links.sort("position")
    assert links.get_column("weight").to_list() == [0.0, 1.0, 0.0]
    assert links.get_column("touchpoint_id").to_list()[1] == "t1"


def test_position_based_counts_the_kept_touches() -> None:
    """a a b a c with first_per_channel: a b c, so 0.4 / 0.2 / 0.4 on t0, t2, t4."""
    tp, cv = journey(["a", "a", "b", "a", "c"], value_micros=10_000_000)
    links = oq.attribute(tp, cv, models=["POSITION_BASED"], touch_rule="first_per_channel").links.sort("position")
    assert links.get_column("weight").to_list() == pytest.approx([0.4, 0.0, 0.2, 0.0, 0.4], abs=1e-15)
    assert links.get_column("credited_value_micros").to_list() == [4_000_000, 0, 2_000_000, 0, 4_000_000]


def test_max_touchpoints_keeps_the_latest_touches() -> None:
    assert credited_path(["a", "b", "c", "d"], max_touchpoints=2) == ["c", "d"]
    assert credited_path(["a", "b"], max_touchpoints=5) == ["a", "b"]


def test_the_cap_comes_before_the_touch_rule() -> None:
    """a b a a, latest 3: b a a, collapsed: b a (Snowplow trims the path before transforming it)."""
    assert credited_path(["a", "b", "a", "a"], max_touchpoints=3, touch_rule="collapse_repeats") == ["b", "a"]


def test_direct_is_dropped_before_repeats_are_collapsed() -> None:
    """a direct a: without direct, a a, collapsed to one a (as the data-driven path transforms do)."""
    assert credited_path(["a", "direct", "a"], drop_direct="unless_all_direct", touch_rule="collapse_repeats") == ["a"]


def test_default_rules_are_the_raw_touches() -> None:
    tp, cv = journey(["a", "a", "direct", "b", "direct"])
    default = oq.attribute(tp, cv, models=HEURISTICS)
    explicit = oq.attribute(tp, cv, models=HEURISTICS, touch_rule="all", drop_direct="never", max_touchpoints=None)
    assert default.links.equals(explicit.links) and default.credit.equals(explicit.credit)


# --- Snowplow's path-transformation cases (dbt-snowplow-attribution's test_path_transformations) ------------
# Their path, and per rule the expected transformed path; '' is a channel of its own (an empty name), the
# direct channel is 'Direct'. Snowplow's names: unique_path (every touch), exposure_path, first_path,
# remove_if_not_all / remove_if_last_and_not_all (with ['Direct']), trim_long_path (path_lookback_steps 1, 2).

SNOWPLOW_CASES = [
    # raw path, unique_path, exposure_path, first_path, remove_if_not_all, remove_if_last_and_not_all, trim 1, trim 2
    (
        "Example > Video > Direct > Direct",
        "Example > Video > Direct > Direct",
        "Example > Video > Direct",
        "Example > Video > Direct",
        "Example > Video",
        "Example > Video",
        "Direct",
        "Direct > Direct",
    ),
    (
        "Direct > Direct",
        "Direct > Direct",
        "Direct",
        "Direct",
        "Direct > Direct",
        "Direct > Direct",
        "Direct",
        "Direct > Direct",
    ),
    (
        "a > a > a > Direct > a > Direct > Direct",
        "a > a > a > Direct > a > Direct > Direct",
        "a > Direct > a > Direct",
        "a > Direct",
        "a > a > a > a",
        "a > a > a > Direct > a",
        "Direct",
        "Direct > Direct",
    ),
    ("Direct", "Direct", "Direct", "Direct", "Direct", "Direct", "Direct", "Direct"),
    (
        "Example > Video > Direct",
        "Example > Video > Direct",
        "Example > Video > Direct",
        "Example > Video > Direct",
        "Example > Video",
        "Example > Video",
        "Direct",
        "Video > Direct",
    ),
    (
        "Example > Video > ",
        "Example > Video > ",
        "Example > Video > ",
        "Example > Video > ",
        "Example > Video > ",
        "Example > Video > ",
        "",
        "Video > ",
    ),
]
SNOWPLOW_RULES = [
    {"touch_rule": "all"},
    {"touch_rule": "collapse_repeats"},
    {"touch_rule": "first_per_channel"},
    {"drop_direct": "unless_all_direct"},
    {"drop_direct": "trailing_unless_all_direct"},
    {"max_touchpoints": 1},
    {"max_touchpoints": 2},
]


def _split(path: str) -> list[str]:
    """Snowplow's steps; its empty step (a channel named "") gets a name: a frame's blank channel is no
    channel, derived like a null (docs/contract.md §4)."""
    return [step or "(empty)" for step in path.split(" > ")]


@pytest.mark.parametrize("case", SNOWPLOW_CASES, ids=lambda c: c[0] or "empty")
@pytest.mark.parametrize("rule", SNOWPLOW_RULES, ids=lambda r: "=".join(map(str, next(iter(r.items())))))
def test_snowplow_path_transformation_cases(case: tuple[str, ...], rule: dict) -> None:
    raw, expected = _split(case[0]), _split(case[1 + SNOWPLOW_RULES.index(rule)])
    assert credited_path(raw, direct_channels=("Direct",), **rule) == expected
    assert transform_path(raw, direct_channels=("Direct",), **rule) == expected  # the reference agrees


def test_snowplow_empty_path_is_an_unattributed_conversion() -> None:
    """Snowplow's '' path: a conversion without touches, under any rule."""
    tp, cv = journey(["a"])
    result = oq.attribute(tp.clear(), cv, models=["LINEAR"], touch_rule="collapse_repeats", max_touchpoints=1)
    assert result.links.height == 0
    assert result.unattributed.get_column("reason").to_list() == ["no_touchpoints"]


# --- the engine against the reference -----------------------------------------------------------------------


@st.composite
def ruled_cases(draw) -> tuple[Case, dict]:
    """Random inputs with few channels (all-direct paths and repeats are likely) and random rules."""
    case = draw(cases())
    palette = draw(st.sampled_from([("direct", "email", "display"), ("direct", "email"), ("direct",), ("a", "b")]))
    for tp in case.touchpoints:
        tp["channel"] = draw(st.sampled_from(palette))
    rules = {
        "touch_rule": draw(st.sampled_from(TOUCH_RULES)),
        "drop_direct": draw(st.sampled_from(DROP_DIRECT)),
        "max_touchpoints": draw(st.one_of(st.none(), st.integers(1, 4))),
    }
    return case, rules


def _engine(case: Case, rules: dict) -> tuple[list[dict], list[dict]]:
    """oq.attribute() with the rules on the case's rows, in the reference's (links, unattributed) form."""
    result = oq.attribute(
        touchpoints_frame(case.touchpoints, case.group_by),
        conversions_frame(case.conversions, case.group_by),
        models=[model_object(n, p) for n, p in case.models],
        lookback=timedelta(microseconds=case.lookback_us),
        reset_after_conversion=case.reset_after_conversion,
        direct_channels=case.direct_channels,
        **rules,
    )
    links = result.links.with_columns(pl.col("model", "channel").cast(pl.String)).to_dicts()
    rank = {c["conversion_id"]: i for i, c in enumerate(case.conversions)}
    unattributed = sorted(
        result.unattributed.select("conversion_id", "reason").to_dicts(), key=lambda r: rank[r["conversion_id"]]
    )
    return links, unattributed


@given(ruled_cases())
@settings(max_examples=150, deadline=None)
def test_engine_matches_the_reference(drawn: tuple[Case, dict]) -> None:
    case, rules = drawn
    links, unattributed = _engine(case, rules)
    ref_links, ref_unattributed = attribute_with_path_rules(
        case.touchpoints, case.conversions, **case.kwargs(), **rules
    )
    check_invariants(links, {c["conversion_id"]: c for c in case.conversions})  # sums, exact micros, 1..n
    assert [(u["conversion_id"], u["reason"]) for u in unattributed] == [
        (u["conversion_id"], u["reason"]) for u in ref_unattributed
    ]
    ours = {(x["model"], x["conversion_id"], x["position"]): x for x in links}
    theirs = {(x["model"], x["conversion_id"], x["position"]): x for x in ref_links}
    assert ours.keys() == theirs.keys()
    for key, mine in ours.items():
        ref = theirs[key]
        assert (mine["touchpoint_id"], mine["touchpoint_count"], mine["channel"]) == (
            ref["touchpoint_id"],
            ref["touchpoint_count"],
            ref["channel"],
        ), key
        assert math.isclose(mine["weight"], ref["weight"], rel_tol=1e-12, abs_tol=1e-15), key
    # The micros are the reference's split of our weights over the kept touches; a touch left out gets none.
    values = {c["conversion_id"]: c["value_micros"] for c in case.conversions}
    journeys: dict[tuple, list[dict]] = {}
    for key in sorted(ours):
        journeys.setdefault(key[:2], []).append(ours[key])
    for (_, cid), rows in journeys.items():
        kept = kept_indices([r["channel"] for r in rows], direct_channels=case.direct_channels, **rules)
        left_out = [r for i, r in enumerate(rows) if i not in kept]
        assert all(r["weight"] == 0 and r["credited_value_micros"] == 0 for r in left_out)
        parts = [rows[i]["credited_value_micros"] for i in kept]
        assert parts == split_value(values[cid], [rows[i]["weight"] for i in kept])


@given(cases())
@settings(max_examples=60, deadline=None)
def test_rules_that_keep_every_touch_give_the_default_result(case: Case) -> None:
    """drop_direct with no direct channel and a cap above every window: the ruled kernel path, every touch
    kept, equals the default path bit for bit."""
    case.direct_channels = ()
    assert _engine(case, {"drop_direct": "unless_all_direct", "max_touchpoints": 10**6}) == _engine(case, {})


@pytest.mark.parametrize("threads", [1, 2])
def test_results_do_not_depend_on_thread_count(threads: int) -> None:
    data = oq.synthetic.generate(n_users=2_000, seed=3)
    rules = {"touch_rule": "first_per_channel", "drop_direct": "trailing_unless_all_direct", "max_touchpoints": 3}
    expected = oq.attribute(data.touchpoints, data.conversions, **rules).links
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        got = oq.attribute(data.touchpoints, data.conversions, **rules).links
    finally:
        numba.set_num_threads(previous)
    assert got.equals(expected)


def test_kernel_codes_follow_the_config_names() -> None:
    codes = (path_rules.ALL, path_rules.COLLAPSE_REPEATS, path_rules.FIRST_PER_CHANNEL)
    assert tuple(TOUCH_RULES.index(n) for n in ("all", "collapse_repeats", "first_per_channel")) == codes
    names = ("never", "unless_all_direct", "trailing_unless_all_direct")
    codes = (path_rules.KEEP_DIRECT, path_rules.DROP_DIRECT_UNLESS_ALL, path_rules.DROP_TRAILING_DIRECT_UNLESS_ALL)
    assert tuple(DROP_DIRECT.index(n) for n in names) == codes


# --- errors, settings, CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"touch_rule": "exposure"}, "touch_rule='collapse_repeats'"),
        ({"touch_rule": "unique_path"}, "touch_rule='all'"),
        ({"touch_rule": "first"}, "first_per_channel"),
        ({"touch_rule": "sideways"}, "must be one of 'all', 'collapse_repeats', 'first_per_channel'"),
        ({"drop_direct": "remove_if_last_and_not_all"}, "drop_direct='trailing_unless_all_direct'"),
        ({"drop_direct": True}, "drop_direct must be one of"),
        ({"max_touchpoints": 0}, "leave it unset (None; null in attributionSettings) for no cap"),
        ({"max_touchpoints": -2}, ">= 1"),
        ({"max_touchpoints": 2.5}, ">= 1"),
        ({"max_touchpoints": True}, ">= 1"),
    ],
)
def test_a_bad_rule_is_one_config_error_with_a_hint(options: dict, message: str) -> None:
    with pytest.raises(oq.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        oq.AttributionConfig(**options)


def test_attribution_settings_carry_the_rules() -> None:
    options, _ = settings_from_json(
        {"touchRule": "collapse_repeats", "dropDirect": "unless_all_direct", "maxTouchpoints": 5}
    )
    config = oq.AttributionConfig().with_options(**options)
    assert (config.touch_rule, config.drop_direct, config.max_touchpoints) == (
        "collapse_repeats",
        "unless_all_direct",
        5,
    )
    options, _ = settings_from_json({"maxTouchpoints": None})
    assert oq.AttributionConfig().with_options(**options).max_touchpoints is None
    options, _ = settings_from_json({"touchRule": "exposure_path"})
    with pytest.raises(oq.ConfigError, match="collapse_repeats"):
        oq.AttributionConfig().with_options(**options)


def test_cli_attribute_takes_the_rules(tmp_path: Path) -> None:
    tp, cv = journey(["display", "organic_search", "organic_search"])
    tp.write_parquet(tmp_path / "tp.parquet")
    cv.write_parquet(tmp_path / "cv.parquet")
    args = [
        "attribute",
        "--touchpoints",
        str(tmp_path / "tp.parquet"),
        "--conversions",
        str(tmp_path / "cv.parquet"),
        "--out",
        str(tmp_path / "out"),
        "-m",
        "LINEAR",
    ]
    result = CliRunner().invoke(app, [*args, "--touch-rule", "collapse_repeats", "--max-touchpoints", "3"])
    assert result.exit_code == 0, result.output
    links = pl.read_parquet(tmp_path / "out" / "links.parquet").sort("position")
    assert links.get_column("credited_value_micros").to_list() == [33_250_000, 33_250_000, 0]
    bad = CliRunner().invoke(app, [*args, "--touch-rule", "exposure"])
    assert bad.exit_code == 2 and "collapse_repeats" in bad.output


def test_model_objects_use_the_rules_too() -> None:
    """Rules are run options: a model given as an object (TIME_DECAY with its half-life) follows them."""
    tp, cv = journey(["a", "a", "b"])
    model = model_object("TIME_DECAY", {"half_life_us": 86_400_000_000})
    links = oq.attribute(tp, cv, models=[model], touch_rule="collapse_repeats").links.sort("position")
    w = links.get_column("weight").to_list()
    assert w[1] == 0.0 and w[0] == pytest.approx(1 / 5) and w[2] == pytest.approx(4 / 5)  # ages 2 days and 0


# --- optiq run: attributionSettings and flags ------------------------------------------------------------------


@pytest.mark.postgres
def test_optiq_run_takes_the_rules_from_attribution_settings_and_flags(postgres_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    from optiq_engine.batch import run_batch
    from optiq_engine.io import db, seed
    from tests.support.pg import fresh_database
    from tests.support.pg_data import db_links, expected_links, retag

    data = retag(oq.synthetic.generate(n_users=300, seed=5), "orgP")
    settings = '{"touchRule": "collapse_repeats", "dropDirect": "trailing_unless_all_direct", "maxTouchpoints": 3,'
    settings += ' "models": ["LINEAR", "LAST_TOUCH"]}'
    rules = {"touch_rule": "collapse_repeats", "drop_direct": "trailing_unless_all_direct", "max_touchpoints": 3}
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
                   VALUES ('st1', 'orgP', %s)""",
                (settings,),
            )
        run_batch(url, organization_id="orgP", full=True)
        tp = data.touchpoints.drop("channel")
        expected = oq.attribute(tp, data.conversions, models=["LINEAR", "LAST_TOUCH"], **rules)
        stored = db_links(url, "orgP")
        assert stored.equals(expected_links(expected))
        assert stored.filter((pl.col("model") == "LINEAR") & (pl.col("weight") == 0)).height > 0  # rules applied
        result = CliRunner().invoke(
            app, ["run", "--database-url", url, "--org", "orgP", "--full", "--touch-rule", "first_per_channel"]
        )
        assert result.exit_code == 0, result.output
        override = oq.attribute(
            tp, data.conversions, models=["LINEAR", "LAST_TOUCH"], **{**rules, "touch_rule": "first_per_channel"}
        )
        assert db_links(url, "orgP").equals(expected_links(override))


def test_data_driven_links_do_not_follow_the_rules() -> None:
    """docs/attribution.md "Path rules": a run with both kinds of model applies the rules to the heuristic
    links alone; the data-driven model credits as it does without them."""
    data = oq.synthetic.generate(n_users=1_500, seed=9)
    rules = {"touch_rule": "collapse_repeats", "drop_direct": "unless_all_direct", "max_touchpoints": 2}
    plain = oq.attribute(data.touchpoints, data.conversions, models=["MARKOV", "LINEAR"])
    ruled = oq.attribute(data.touchpoints, data.conversions, models=["MARKOV", "LINEAR"], **rules)
    markov = pl.col("model") == "MARKOV"
    assert ruled.links.filter(markov).equals(plain.links.filter(markov))
    linear_alone = oq.attribute(data.touchpoints, data.conversions, models=["LINEAR"], **rules)
    assert ruled.links.filter(~markov).drop("model").equals(linear_alone.links.drop("model"))


@pytest.mark.spark
def test_attribute_spark_follows_the_rules() -> None:
    from optiq_engine.spark import attribute_spark
    from tests.support.spark import local_session

    data = oq.synthetic.generate(n_users=600, seed=4)
    tp, cv = (
        f.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String)) for f in (data.touchpoints, data.conversions)
    )
    rules = {"touch_rule": "first_per_channel", "drop_direct": "trailing_unless_all_direct", "max_touchpoints": 3}
    expected = oq.attribute(tp, cv, models=["LINEAR", "TIME_DECAY"], **rules).links
    for spark in local_session():
        result = attribute_spark(
            spark.createDataFrame(tp.to_arrow()),
            spark.createDataFrame(cv.to_arrow()),
            models=["LINEAR", "TIME_DECAY"],
            partitions=2,
            **rules,
        )
        got = pl.from_arrow(result.links.toArrow())
        key = ["model", "conversion_id", "position"]
        columns = ["conversion_id", "touchpoint_id", "position", "credited_value_micros"]
        a = expected.with_columns(pl.col("model").cast(pl.String)).sort(key)
        b = got.with_columns(pl.col("model").cast(pl.String)).select(a.columns).sort(key)
        assert a.select(columns).equals(b.select(columns))
        assert (a.get_column("weight") - b.get_column("weight")).abs().max() <= 1e-12
