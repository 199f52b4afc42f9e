"""Tests of benchmarks/holdout_worlds.py: a literal scalar reference of every mechanism, Shapley values over
permutations (written with the simulator, by its author)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from benchmarks import holdout_worlds as ew

NAMES = list(ew.MECHANISMS)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def ref_P(name: str, chans: list[str], b: float, S: frozenset[str]) -> float:
    """Literal definition, one user, one coalition S (touch positions are those of the whole sequence)."""
    p = ew.MECHANISMS[name]
    beta = p.get("beta", {})
    n = {c: sum(1 for x in chans if x == c and x in S) for c in set(chans)}
    counts = sum(beta.get(c, 0.0) * k for c, k in n.items())
    if name == "three_way":
        return sig(b + p["triple_effect"] * all(n.get(c, 0) > 0 for c in p["triple"]) + counts)
    if name == "substitutes":
        a, bb = p["pair"]
        return sig(b + p["pair_effect"] * (n.get(a, 0) > 0 or n.get(bb, 0) > 0) + counts)
    if name == "first_touch_awareness":
        first = p["first"].get(chans[0], 0.0) if chans[0] in S else 0.0
        return sig(b + first + counts)
    if name == "channel_saturation":
        tot = sum(beta.get(c, 0.0) * (1 - math.exp(-k / p["k"][c])) for c, k in n.items() if c in p["k"])
        return sig(b + tot)
    if name == "hazard_with_fatigue":
        surv = 1.0
        for j in range(len(chans)):
            x = sum(beta.get(c, 0.0) for c in chans[: j + 1] if c in S)
            surv *= 1 - sig(b + x - p["fatigue"] * j)
        return 1 - surv
    if name == "late_surge":
        nt = len(chans)
        tot = sum(
            (1.0 if j >= nt - p["late_touches"] else p["early_weight"]) * beta.get(c, 0.0)
            for j, c in enumerate(chans)
            if c in S
        )
        return sig(b + tot)
    if name == "strongest_only":
        return sig(b + max([beta.get(c, 0.0) for c in set(chans) if c in S], default=0.0))
    raise KeyError(name)


def ref_shapley(name: str, chans: list[str], b: float) -> dict[str, float]:
    players = sorted(set(chans))
    v = lambda S: ref_P(name, chans, b, frozenset(S)) - ref_P(name, chans, b, frozenset())  # noqa: E731
    phi = dict.fromkeys(players, 0.0)
    perms = list(itertools.permutations(players))
    for perm in perms:
        S: set[str] = set()
        for c in perm:
            before = v(S)
            S.add(c)
            phi[c] += v(S) - before
    return {c: x / len(perms) for c, x in phi.items()}


def user_chans(w: ew.World, u: int) -> list[str]:
    e = w.exposure
    return [ew.CHANNELS[g] for g in e.channel[e.offsets[u] : e.offsets[u + 1]]]


@pytest.mark.parametrize("name", NAMES)
def test_shares_sum_to_one_and_efficiency(name):
    w = ew.generate(name, 3000, seed=1, keep_user_values=True)
    assert abs(w.truth["true_share"].sum() - 1) < 1e-12
    # per-user efficiency: sum_c phi = P(all) - P(empty)
    eff = w.user_values.sum(axis=1)
    np.testing.assert_allclose(eff, w.users["p_convert"] - w.users["p_baseline"], atol=1e-12)
    assert abs(w.truth["true_contribution"].sum() - (w.expected_conversions - w.baseline_conversions)) < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_against_bruteforce_permutations(name):
    w = ew.generate(name, 400, seed=3, keep_user_values=True)
    b = ew.MECHANISMS[name]["alpha"] + ew.INTENT_SD * w.exposure.intent
    m = w.users["distinct"].to_numpy()
    picked = [u for u in range(400) if m[u] <= 6][:40]
    picked += [u for u in range(400) if m[u] == max(m[m <= 7])][:3]  # a few of the largest feasible
    for u in picked:
        ch = user_chans(w, u)
        ref = ref_shapley(name, ch, float(b[u]))
        for c in ew.CHANNELS:
            assert abs(w.user_values[u, ew.CI[c]] - ref.get(c, 0.0)) < 1e-12, (u, c, ch)
        full = ref_P(name, ch, float(b[u]), frozenset(ch))
        assert abs(w.users["p_convert"][u] - full) < 1e-12
        assert abs(w.users["p_baseline"][u] - ref_P(name, ch, float(b[u]), frozenset())) < 1e-12


def zero_effect_channels(name: str) -> list[str]:
    p = ew.MECHANISMS[name]
    used = set(p.get("beta", {})) | set(p.get("triple", ())) | set(p.get("pair", ())) | set(p.get("first", {}))
    return [c for c in ew.CHANNELS if c not in used]


@pytest.mark.parametrize("name", NAMES)
def test_zero_effect_channel_gets_zero(name):
    w = ew.generate(name, 5000, seed=2, keep_user_values=True)
    zeros = zero_effect_channels(name)
    assert "direct" in zeros and len(zeros) >= 3
    for c in zeros:
        assert w.truth.filter(ew.pl.col("channel") == c)["true_contribution"][0] == 0.0
        assert np.all(np.abs(w.user_values[:, ew.CI[c]]) < 1e-15)
        assert w.truth.filter(ew.pl.col("channel") == c)["reach"][0] > 0  # reached, yet no effect
    # and every channel with an effect does get credit
    for c in ew.CHANNELS:
        if c not in zeros:
            assert w.truth.filter(ew.pl.col("channel") == c)["true_contribution"][0] > 0


@pytest.mark.parametrize("name", NAMES)
def test_realised_matches_expected(name):
    w = ew.generate(name, 30_000, seed=4)
    p = w.users["p_convert"].to_numpy()
    sd = math.sqrt((p * (1 - p)).sum())
    got = w.conversions.height
    assert abs(got - w.expected_conversions) < 4 * sd, (got, w.expected_conversions, sd)
    # base and total rates in the intended range
    assert 0.03 <= w.baseline_conversions / 30_000 <= 0.08
    assert 0.08 <= got / 30_000 <= 0.15


@pytest.mark.parametrize("name", NAMES)
def test_frames_contract(name):
    w = ew.generate(name, 2000, seed=5)
    tp, cv = w.touchpoints, w.conversions
    assert tp.schema["occurred_at"] == ew.pl.Datetime("us", "UTC")
    assert cv.schema["occurred_at"] == ew.pl.Datetime("us", "UTC")
    assert tp["touchpoint_id"].n_unique() == tp.height and cv["conversion_id"].n_unique() == cv.height
    assert cv["anon_id"].n_unique() == cv.height and (cv["value_micros"] > 0).all()
    assert set(tp["channel"].unique()) <= set(ew.CHANNELS)
    # strictly increasing times per user, span <= 60 days, <= 8 distinct channels
    g = tp.group_by("anon_id").agg(
        ew.pl.col("occurred_at").diff().min().alias("mind"),
        (ew.pl.col("occurred_at").max() - ew.pl.col("occurred_at").min()).alias("span"),
        ew.pl.col("channel").n_unique().alias("m"),
    )
    assert (g["mind"].drop_nulls().dt.total_microseconds() > 0).all()
    assert (g["span"].dt.total_days() <= 60).all() and g["m"].max() <= 8
    # a conversion comes at or after the user's touch that decided it, for end deciders after the last
    last = tp.group_by("anon_id").agg(ew.pl.col("occurred_at").max().alias("last"))
    j = cv.join(last, on="anon_id")
    if ew.MECHANISMS[name]["kind"] == "end":
        assert (j["occurred_at"] > j["last"]).all()


def test_same_seed_same_frames():
    a = ew.generate("late_surge", 1000, seed=7)
    b = ew.generate("late_surge", 1000, seed=7)
    assert a.touchpoints.equals(b.touchpoints) and a.conversions.equals(b.conversions)
    assert a.truth.equals(b.truth)
