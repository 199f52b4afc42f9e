"""Tests of the independent simulator ``optiq_engine.simulate.worlds`` (docs/worlds.md).

The exact truth is compared with the literal reference of ``tests/reference/worlds.py`` (formulas written
from the docs, per-touch decisions enumerated, Shapley values by permutations) on small users of every
mechanism.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from optiq_engine.errors import ConfigError
from optiq_engine.experiments import Experiment
from optiq_engine.simulate import worlds
from tests.reference import worlds as ref

MECHANISMS = list(worlds.MECHANISMS)


@pytest.fixture(scope="module")
def small() -> dict[str, worlds.World]:
    return {m: worlds.generate(m, n_users=600, seed=3, user_values=True) for m in MECHANISMS}


@pytest.fixture(scope="module")
def medium() -> dict[str, worlds.World]:
    return {m: worlds.generate(m, n_users=20_000, seed=11) for m in MECHANISMS}


def _journeys(world: worlds.World) -> dict[str, list[tuple[str, int]]]:
    tp = world.touchpoints.select("anon_id", "channel", pl.col("occurred_at").dt.epoch("us"))
    out: dict[str, list[tuple[str, int]]] = {}
    for a, c, t in tp.iter_rows():
        out.setdefault(a, []).append((c, t))
    return out


def test_mechanisms_listed() -> None:
    assert len(MECHANISMS) >= 12
    assert all(isinstance(d, str) and d for d in worlds.MECHANISMS.values())
    with pytest.raises(TypeError):
        worlds.MECHANISMS["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_truth_equals_reference_on_small_users(small: dict[str, worlds.World], mechanism: str) -> None:
    world = small[mechanism]
    journeys = _journeys(world)
    values = {}
    for a, c, v in world.user_values.iter_rows():
        values.setdefault(a, {})[c] = v
    users = world.users.with_columns(pl.col("decision_at").dt.epoch("us"))
    checked = 0
    for a, segment, intent, decision, p_all, p_none in users.iter_rows():
        touches = journeys[a]
        if len({c for c, _ in touches}) > 4 or len(touches) > 9:
            continue
        expected, p_ref, none_ref = ref.user_truth(world.params, segment, intent, touches, decision)
        assert p_all == pytest.approx(p_ref, abs=1e-12, rel=1e-10)
        assert p_none == pytest.approx(none_ref, abs=1e-12, rel=1e-10)
        assert set(values[a]) == set(expected)
        for c, v in expected.items():
            assert values[a][c] == pytest.approx(v, abs=1e-12), (a, c)
        checked += 1
        if checked == 25:
            break
    assert checked == 25


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_efficiency_per_user(small: dict[str, worlds.World], mechanism: str) -> None:
    world = small[mechanism]
    sums = world.user_values.group_by("anon_id").agg(pl.col("value").sum())
    joined = world.users.join(sums, on="anon_id", how="left")
    lift = (joined["p_convert"] - joined["p_baseline"]).to_numpy()
    np.testing.assert_allclose(joined["value"].fill_null(0.0).to_numpy(), lift, atol=1e-12)
    total = world.truth["true_contribution"].sum()
    assert total == pytest.approx(world.expected_conversions - world.baseline_conversions, rel=1e-9)
    assert world.truth["true_share"].sum() == pytest.approx(1.0)


def _zero_effect(params: dict) -> set[str]:
    """Channels with no effect in any segment and in no pair / threshold term."""
    used = {c for g in params["segments"] for c, b in g["beta"].items() if b != 0.0}
    used |= {c for g in params["segments"] for c, q in g["quad"].items() if q != 0.0}
    used |= {p["first"] for p in params["pairs"]} | {p["second"] for p in params["pairs"]}
    if params["threshold"]:
        used |= set(params["threshold"]["channels"])
    return set(params["channels"]) - used


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_zero_effect_channels_get_nothing(small: dict[str, worlds.World], mechanism: str) -> None:
    world = small[mechanism]
    zero = _zero_effect(world.params)
    assert {"direct", "referral"} <= zero or mechanism == "negative"
    truth = world.truth.filter(pl.col("channel").is_in(sorted(zero)))
    assert truth["true_contribution"].abs().max() == 0.0
    assert (truth["reach"] > 0).all()  # zero-effect channels are reached: a real trap


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_realised_conversions_match_expected(medium: dict[str, worlds.World], mechanism: str) -> None:
    world = medium[mechanism]
    realised, expected = world.conversions.height, world.expected_conversions
    assert 0.05 <= realised / 20_000 <= 0.30
    # about 2,000 expected conversions: one standard deviation is about 2 %
    sd = float((world.users["p_convert"] * (1 - world.users["p_convert"])).sum()) ** 0.5
    assert abs(realised - expected) < 3.5 * sd, (realised, expected, sd)
    assert abs(realised - expected) / expected < 0.08, (realised, expected)


@pytest.mark.parametrize("mechanism", ["touch_stock", "mixed", "end_decay"])
def test_frames_follow_the_contract(small: dict[str, worlds.World], mechanism: str) -> None:
    world = small[mechanism]
    assert world.touchpoints.schema == pl.Schema(
        {
            "touchpoint_id": pl.String,
            "anon_id": pl.String,
            "occurred_at": pl.Datetime("us", "UTC"),
            "channel": pl.Enum(worlds.CHANNELS),
        }
    )
    assert world.conversions.schema == pl.Schema(
        {
            "conversion_id": pl.String,
            "anon_id": pl.String,
            "occurred_at": pl.Datetime("us", "UTC"),
            "value_micros": pl.Int64,
        }
    )
    assert world.conversions["anon_id"].is_unique().all()  # at most one conversion per user
    assert (world.conversions["value_micros"] > 0).all()
    assert world.touchpoints["touchpoint_id"].is_unique().all()
    assert world.truth["channel"].to_list() == list(worlds.CHANNELS)
    # every conversion follows a touch of its user (within 6 h for per-touch deciders, 1 day for journey ends)
    last = world.touchpoints.join(world.conversions.select("anon_id", cv="occurred_at"), on="anon_id")
    gap = (
        last.filter(pl.col("occurred_at") <= pl.col("cv"))
        .group_by("anon_id")
        .agg((pl.col("cv") - pl.col("occurred_at")).min())
    )
    assert gap.height == world.conversions.height
    assert gap["cv"].max() <= timedelta(days=1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert world.touchpoints["occurred_at"].min() >= start
    assert world.conversions["occurred_at"].max() < datetime(2026, 4, 1, tzinfo=UTC)


def test_after_conversion_drop() -> None:
    keep = worlds.generate("touch_stock", n_users=3_000, seed=5)
    drop = worlds.generate("touch_stock", n_users=3_000, seed=5, after_conversion="drop")
    assert_frame_equal(keep.truth, drop.truth)
    assert_frame_equal(keep.conversions, drop.conversions)
    assert drop.touchpoints.height < keep.touchpoints.height
    late = drop.touchpoints.join(drop.conversions.select("anon_id", cv="occurred_at"), on="anon_id")
    assert late.filter(pl.col("occurred_at") > pl.col("cv")).height == 0
    late_keep = keep.touchpoints.join(keep.conversions.select("anon_id", cv="occurred_at"), on="anon_id")
    assert (
        late_keep.filter(pl.col("occurred_at") > pl.col("cv")).height
        == keep.touchpoints.height - drop.touchpoints.height
    )


def test_deterministic_by_seed() -> None:
    a = worlds.generate("end_order", n_users=2_000, seed=7)
    b = worlds.generate("end_order", n_users=2_000, seed=7)
    c = worlds.generate("end_order", n_users=2_000, seed=8)
    for name in ("touchpoints", "conversions", "truth", "users"):
        assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.touchpoints.equals(c.touchpoints)


def test_truth_signed_in_negative_world(small: dict[str, worlds.World]) -> None:
    truth = dict(small["negative"].truth.select("channel", "true_contribution").iter_rows())
    assert truth["display"] < 0 < truth["google_ads"]


def test_intent_loads_exposure_only_in_confounded(small: dict[str, worlds.World]) -> None:
    def email_intent(world: worlds.World) -> float:
        touched = world.touchpoints.filter(pl.col("channel") == "email")["anon_id"].unique()
        users = world.users.with_columns(pl.col("anon_id").is_in(touched.implode()).alias("email"))
        return users.group_by("email").agg(pl.col("intent").mean()).sort("email")["intent"].diff()[1]

    assert email_intent(small["confounded"]) > 0.3
    assert abs(email_intent(small["end_additive"])) < 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mechanism": "nope"}, "unknown mechanism"),
        ({"mechanism": 3}, "unknown mechanism"),
        ({"n_users": 0}, "n_users"),
        ({"n_users": True}, "n_users"),
        ({"n_users": 2.5}, "n_users"),
        ({"seed": -1}, "seed"),
        ({"days": 1}, "days"),
        ({"touches_per_user": 0.5}, "touches_per_user"),
        ({"touches_per_user": "5"}, "touches_per_user"),
        ({"after_conversion": "cut"}, "after_conversion"),
        ({"start": datetime(2026, 1, 1)}, "start"),
    ],
)
def test_arguments_are_validated(kwargs: dict, match: str) -> None:
    args = {"mechanism": "end_additive", "n_users": 10} | kwargs
    with pytest.raises(ConfigError, match=match):
        worlds.generate(args.pop("mechanism"), **args)


def test_truth_does_not_depend_on_the_thread_count() -> None:
    import numba

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = worlds.generate("mixed", n_users=3_000, seed=2)
    finally:
        numba.set_num_threads(before)
    two = worlds.generate("mixed", n_users=3_000, seed=2)
    assert_frame_equal(one.truth, two.truth)
    assert_frame_equal(one.users, two.users)


# --- holdout effects and lift tests (docs/worlds.md §3, "Holdout effect and lift tests") ---


def _reference_users(world: worlds.World) -> list[ref.User]:
    """``(segment, intent, touches, decision)`` of every user of ``world``, for the reference."""
    journeys = _journeys(world)
    users = world.users.with_columns(pl.col("decision_at").dt.epoch("us"))
    return [
        (g, z, journeys[a], d) for a, g, z, d in users.select("anon_id", "segment", "intent", "decision_at").iter_rows()
    ]


@pytest.fixture(scope="module")
def tiny() -> dict[str, worlds.World]:
    """Worlds whose every user is small enough for the reference's enumeration (at most 9 touches)."""
    return {m: worlds.generate(m, n_users=300, seed=1, touches_per_user=2.0) for m in MECHANISMS}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_holdout_effect_equals_reference(tiny: dict[str, worlds.World], mechanism: str) -> None:
    world = tiny[mechanism]
    users = _reference_users(world)
    assert max(len(t) for _, _, t, _ in users) <= 12  # the reference enumerates 2^n outcomes per user
    expected = ref.holdout_effects(world.params, users)
    for c in worlds.CHANNELS:
        assert world.holdout_effect(c) == pytest.approx(expected[c], rel=1e-9, abs=1e-12), c
    assert world.truth["holdout_effect"].to_list() == [world.holdout_effect(c) for c in worlds.CHANNELS]


def test_holdout_effect_differs_from_shapley_under_interaction(tiny: dict[str, worlds.World]) -> None:
    # the reference check above exercises the pair: removing meta_ads loses the whole joint effect, which
    # Shapley splits between meta_ads and google_ads
    truth = dict(tiny["end_interaction"].truth.select("channel", "true_contribution").iter_rows())
    assert tiny["end_interaction"].holdout_effect("meta_ads") > 1.5 * truth["meta_ads"] > 0


@pytest.mark.parametrize("mechanism", ["end_additive", "end_decay"])
def test_holdout_effect_is_shapley_with_one_channel_per_user(mechanism: str) -> None:
    world = worlds.generate(mechanism, n_users=5_000, seed=4, touches_per_user=1.0)
    assert world.touchpoints.height == 5_000  # one touch, hence one channel, per user
    for c, contribution in world.truth.select("channel", "true_contribution").iter_rows():
        assert world.holdout_effect(c) == pytest.approx(contribution, rel=1e-12, abs=1e-15), c
    assert world.holdout_effect("google_ads") > 0


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_holdout_effect_of_zero_effect_channels_is_zero(small: dict[str, worlds.World], mechanism: str) -> None:
    world = small[mechanism]
    for c in _zero_effect(world.params):
        assert world.holdout_effect(c) == 0.0, c


def test_holdout_effect_of_an_untouched_channel_is_zero() -> None:
    world = worlds.generate("end_additive", n_users=1, seed=0, touches_per_user=1.0)
    touched = world.touchpoints["channel"].cast(pl.String).to_list()
    assert len(touched) == 1
    truth = dict(world.truth.select("channel", "true_contribution").iter_rows())
    for c in worlds.CHANNELS:
        assert world.holdout_effect(c) == (truth[c] if c in touched else 0.0), c


def test_lift_test_fields(small: dict[str, worlds.World]) -> None:
    world = small["confounded"]
    test = world.lift_test("email", holdout=0.2)
    assert isinstance(test, Experiment)
    assert test.channel == "email"
    assert test.incremental_conversions == world.holdout_effect("email") > 0
    assert test.start is None and test.end is None
    n = world.users.height
    p_test = world.users["p_convert"].to_numpy().mean()
    p_control = p_test - world.holdout_effect("email") / n
    se = n * np.sqrt(p_test * (1 - p_test) / (0.8 * n) + p_control * (1 - p_control) / (0.2 * n))
    assert test.std_error == pytest.approx(se, rel=1e-12)
    assert world.lift_test("email").std_error > test.std_error  # the default 10 % holdout is noisier
    assert world.lift_test("referral").incremental_conversions == 0.0 < world.lift_test("referral").std_error


def test_lift_test_std_error_matches_simulated_experiments() -> None:
    """Run many randomized holdouts of google_ads on the reference's P_u(D_u) and P_u(D_u minus google_ads)."""
    world = worlds.generate("end_additive", n_users=3_000, seed=2)
    users = _reference_users(world)
    p_test = np.array([ref.probability(world.params, g, z, t, d, {c for c, _ in t}) for g, z, t, d in users])
    lost = np.array([ref.user_holdout(world.params, g, z, t, d).get("google_ads", 0.0) for g, z, t, d in users])
    p_control = p_test - lost
    n, held, runs = p_test.size, 300, 4_000
    rng = np.random.default_rng(0)
    order = rng.random((runs, n)).argsort(axis=1)
    control = np.zeros((runs, n), np.bool_)
    np.put_along_axis(control, order[:, :held], True, axis=1)
    converted = rng.random((runs, n)) < np.where(control, p_control, p_test)
    estimate = n * ((converted & ~control).sum(axis=1) / (n - held) - (converted & control).sum(axis=1) / held)
    test = world.lift_test("google_ads", holdout=held / n)
    assert abs(estimate.mean() - test.incremental_conversions) < 4 * test.std_error / np.sqrt(runs)
    assert estimate.std() == pytest.approx(test.std_error, rel=0.05)


@pytest.mark.parametrize("channel", ["tv", "", 3, None])
def test_holdout_effect_rejects_unknown_channels(small: dict[str, worlds.World], channel: object) -> None:
    world = small["end_additive"]
    with pytest.raises(ConfigError, match="channel"):
        world.holdout_effect(channel)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="channel"):
        world.lift_test(channel)  # type: ignore[arg-type]


@pytest.mark.parametrize("holdout", [0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_lift_test_rejects_bad_holdouts(small: dict[str, worlds.World], holdout: object) -> None:
    with pytest.raises(ConfigError, match="holdout"):
        small["end_additive"].lift_test("email", holdout=holdout)  # type: ignore[arg-type]
