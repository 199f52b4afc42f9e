"""DATA_DRIVEN form="auto": the whole-journey model picks the mechanism of small worlds built here, experiments
calibrate it, and its decomposition equals the brute-force reference (docs/data_driven.md §6-§7).

The worlds below are written for these tests only (not the project's simulator): channels with fixed
effects, journeys of Poisson length with exponential gaps, and one of several conversion mechanisms. The
truth is, per user, the Shapley allocation of ``P(convert | exposures restricted to S) - P(convert | none)``
on the user's whole planned journey, summed over users and normalised.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.kernels import journey_model as jm
from optiq_engine.models.conversion import JourneyModel
from optiq_engine.models.data_driven.journey_model import step_decays
from optiq_engine.models.data_driven.likelihood import Likelihood
from optiq_engine.paths import PathTable, build_path_table
from tests.reference import data_driven as ref

CHANNELS = ("a", "b", "c", "d", "e")
EXPOSURE = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
EFFECT = np.array([0.9, 0.5, 0.15, 0.6, 0.3])
MECHANISMS = (
    "touch",
    "journey",
    "journey_decay",
    "touch_decay",
    "mixed",
    "journey_pair",
    "journey_then",
    "journey_first",
    "journey_presence",
)
PAIR_ALONE = np.array([1.0, 0.0, 1.0, 0.0, 1.0])  # journey_pair: the effects of b and d alone


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


OWN_HALF_LIVES = np.array([1.5, 1.5, 3.0, 12.0, 3.0])  # touch_own: d is remembered for weeks


def _stock(codes: np.ndarray, times: np.ndarray, at: np.ndarray, half_life: float | np.ndarray | None) -> np.ndarray:
    """``[len(at), C]``: per evaluation time, each channel's touches at or before it, decayed by age (each
    channel's own half-life where ``half_life`` is an array)."""
    age = at[:, None] - times[None, :]
    own = half_life if half_life is None or np.isscalar(half_life) else np.asarray(half_life)[codes][None, :]
    w = np.where(age >= 0, 1.0 if own is None else 0.5 ** (np.maximum(age, 0) / own), 0.0)
    out = np.zeros((at.shape[0], len(CHANNELS)))
    for c in range(len(CHANNELS)):
        out[:, c] = w[:, codes == c].sum(axis=1)
    return out


def _p_convert(mech: str, codes: np.ndarray, times: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """P(convert) of one planned journey for each row of ``mask`` ([S, C] effects kept)."""
    beta = EFFECT[None, :] * mask  # [S, C]
    if mech in ("touch", "touch_decay", "touch_own"):
        x = _stock(codes, times, times, _half_life(mech))  # [m, C]
        h = _sigmoid(-3.6 + beta @ x.T)  # [S, m]
        return 1.0 - np.prod(1.0 - h, axis=1)
    end = np.array([times[-1] + 1.0])
    x = _stock(codes, times, end, 3.0 if mech == "journey_decay" else None)[0]
    if mech in ("journey_pair", "journey_then"):  # b and d do nothing alone, +1.6 in log-odds together
        holds = x[1] > 0 and x[3] > 0  # both touched; journey_then: some b before some d
        if mech == "journey_then":
            holds = holds and 3 in codes[int(np.argmax(codes == 1)) + 1 :]
        return _sigmoid(-2.4 + (beta * PAIR_ALONE) @ x + 1.6 * mask[:, 1] * mask[:, 3] * float(holds))
    if mech == "journey_presence":  # whether the journey saw a channel, however often
        return _sigmoid(-2.4 + 1.5 * beta @ (x > 0))
    if mech == "journey_first":  # b and d do nothing, except b as the journey's first touch: +1.6
        return _sigmoid(-2.4 + (beta * PAIR_ALONE) @ x + 1.6 * mask[:, 1] * float(codes[0] == 1))
    return _sigmoid(-2.4 + beta @ x)


def _half_life(mech: str) -> float | np.ndarray | None:
    return {"touch": None, "touch_decay": 3.0, "touch_own": OWN_HALF_LIVES}[mech]


def world(
    mech: str, n_users: int, seed: int, users: list | None = None, spread: float | None = None
) -> tuple[pl.DataFrame, np.ndarray]:
    """Observed journeys (``path``, ``conv``, ``null``) and the true channel shares; ``users``, when given,
    gets each user's touches (channel codes, times in days) and conversion time (None: none). Gaps between
    touches: exponential, mean 2 days, or (``spread``) each user's own mean, log-normal around 2 days with log-sd
    ``spread`` (users who come back within hours and users who come back after weeks)."""
    rng = np.random.default_rng(seed)
    masks = np.array(list(itertools.product([0, 1], repeat=len(CHANNELS))), dtype=np.float64)
    truth = np.zeros(len(CHANNELS))
    paths, conv = [], []
    for _ in range(n_users):
        m = 1 + min(rng.poisson(2.5), 14)
        codes = rng.choice(len(CHANNELS), size=m, p=EXPOSURE)
        mean_gap = 2.0 if spread is None else rng.lognormal(math.log(2.0), spread)
        gaps = rng.exponential(mean_gap, m - 1)
        times = np.cumsum(np.concatenate([[0.0], gaps]))
        user_mech = mech if mech != "mixed" else ("touch" if rng.random() < 0.5 else "journey")
        present = np.unique(codes)
        sub = masks[np.all(masks[:, [c for c in range(len(CHANNELS)) if c not in present]] == 0, axis=1)]
        v = _p_convert(user_mech, codes, times, sub)
        value = {tuple(r): x for r, x in zip(sub.astype(int).tolist(), v.tolist(), strict=True)}
        d = len(present)
        for c in present:
            phi = 0.0
            others = [o for o in present if o != c]
            for r in range(d):
                w = math.factorial(r) * math.factorial(d - r - 1) / math.factorial(d)
                for s in itertools.combinations(others, r):
                    key = np.zeros(len(CHANNELS), dtype=int)
                    key[list(s)] = 1
                    without = value[tuple(key.tolist())]
                    key[c] = 1
                    phi += w * (value[tuple(key.tolist())] - without)
            truth[c] += phi
        # what is observed
        if user_mech in ("touch", "touch_decay", "touch_own"):
            x = _stock(codes, times, times, _half_life(user_mech))
            h = _sigmoid(-3.6 + x @ EFFECT)
            hit = np.flatnonzero(rng.random(m) < h)
            if hit.shape[0]:
                j = hit[0]
                if users is not None:
                    users.append((codes, times, times[j] + 0.001))
                paths.append([CHANNELS[c] for c in codes[: j + 1]])
                conv.append(1)
                if j + 1 < m:  # the touches after the conversion: a new, non-converting journey
                    paths.append([CHANNELS[c] for c in codes[j + 1 :]])
                    conv.append(0)
                continue
            paths.append([CHANNELS[c] for c in codes])
            conv.append(0)
            if users is not None:
                users.append((codes, times, None))
        else:
            end = np.array([times[-1] + 1.0])
            paths.append([CHANNELS[c] for c in codes])
            conv.append(int(rng.random() < _p_convert(user_mech, codes, times, np.ones((1, len(CHANNELS))))[0]))
            if users is not None:
                users.append((codes, times, end[0] if conv[-1] else None))
    frame = pl.DataFrame({"path": paths, "conv": conv}).with_columns(null=1 - pl.col("conv"))
    truth = np.maximum(truth, 0)
    return frame, truth / truth.sum()


def table_of(frame: pl.DataFrame) -> PathTable:
    return PathTable.from_frame(frame, conversions="conv", nulls="null", transform="frequency")


def half_l1(fit, truth: np.ndarray) -> float:
    return 0.5 * float(np.abs(fit.shares_for(CHANNELS) - truth).sum())


@pytest.fixture(scope="module")
def worlds() -> dict[str, tuple[pl.DataFrame, np.ndarray]]:
    return {mech: world(mech, 6_000, seed=i) for i, mech in enumerate(("touch", "journey"))}


@pytest.mark.parametrize("mech", ["touch", "journey"])
def test_auto_picks_the_mechanism_and_recovers_the_shares(worlds, mech) -> None:
    frame, truth = worlds[mech]
    auto = oq.models.DataDriven(form="auto").fit(table_of(frame))
    assert auto.form_weights[mech] > 0.9, auto.form_selection
    assert auto.mechanism.startswith({"touch": "per-touch hazard", "journey": "journey-end"}[mech])
    assert auto.form_selection.get_column("weight").sum() == pytest.approx(1.0)
    assert "mechanism" in auto._repr_html_() and auto.mechanism in auto._repr_html_()
    wrong = oq.models.DataDriven(form="journey" if mech == "touch" else "touch").fit(table_of(frame))
    assert half_l1(auto, truth) < 0.06
    assert half_l1(auto, truth) < half_l1(wrong, truth)


def test_a_decision_on_which_channels_were_seen_is_read_as_presence(monkeypatch) -> None:
    """Repeats that add nothing (the classical presence model): the presence shape is chosen, and its shares
    are closer to the truth than the choice without it (docs/data_driven.md §6.1)."""
    from optiq_engine.models.data_driven import form_choice

    frame, truth = world("journey_presence", 6_000, seed=7)
    auto = oq.models.DataDriven(form="auto").fit(table_of(frame))
    assert auto.mechanism == "journey-end decision, channel presence", auto.form_selection
    monkeypatch.setattr(form_choice, "AUTO_SHAPES", tuple(s for s in form_choice.AUTO_SHAPES if s[1] > 0))
    without = oq.models.DataDriven(form="auto").fit(table_of(frame))
    assert "presence" not in without.mechanism
    assert half_l1(auto, truth) < 0.04
    assert half_l1(auto, truth) < half_l1(without, truth), (half_l1(auto, truth), half_l1(without, truth))


def test_a_choice_on_a_thinned_sample_keeps_the_mechanism_and_lists_the_refit_first(worlds, monkeypatch) -> None:
    """Above ``SELECT_JOURNEYS`` the choice is made on a Poisson-thinned sample, the chosen candidates refitted on
    every journey: the same mechanism and nearly the same shares, and ``form_selection`` lists the refitted
    candidates (their BIC on every journey) first, not after the sample's smaller BICs."""
    from optiq_engine.models.data_driven import form_choice

    frame, truth = worlds["journey"]
    whole = oq.models.DataDriven(form="auto").fit(table_of(frame))
    monkeypatch.setattr(form_choice, "SELECT_JOURNEYS", 2_000)
    thinned = oq.models.DataDriven(form="auto").fit(table_of(frame))
    top = thinned.form_selection.row(0, named=True)
    assert top["weight"] == thinned.form_selection["weight"].max()
    assert top["journeys"] == 6_000 and thinned.form_selection["journeys"].min() < 2_500
    assert "journey-end" in thinned.mechanism, thinned.form_selection
    assert half_l1(thinned, truth) < 0.06
    assert abs(half_l1(thinned, truth) - half_l1(whole, truth)) < 0.02


@pytest.mark.parametrize(
    ("mech", "name"), [("journey_pair", "b with d"), ("journey_then", "b then d"), ("journey_first", "b first")]
)
def test_auto_finds_channels_that_work_only_together(mech, name) -> None:
    """Pair effects (docs/data_driven.md §6.1, "Pairs"): b and d do nothing alone, much together (or when
    b came first)."""
    frame, truth = world(mech, 6_000, seed=5)
    auto = oq.models.DataDriven(form="auto").fit(table_of(frame))
    assert auto.mechanism.endswith(f", with {name}"), auto.form_selection
    terms = auto.conversion_model.coefficients(auto.paths.channels)
    pair = terms.filter(pl.col("term").str.contains(" with | then | first$"))
    assert pair.get_column("term").to_list() == [name]
    assert pair.get_column("coef")[0] == pytest.approx(1.6, abs=0.4)
    assert auto.form_selection.filter(pl.col("weight") == pl.col("weight").max())["pairs"][0] == name
    journey = oq.models.DataDriven(form="journey").fit(table_of(frame))  # no pairs: the additive logistic
    assert half_l1(auto, truth) < 0.05
    assert half_l1(auto, truth) < half_l1(journey, truth) - 0.01
    # a partition's table (other channel codes: no "a") gets the same values by channel name
    part = frame.filter(~pl.col("path").list.contains("a"))
    sub = table_of(part)
    assert sub.channels == ("b", "c", "d", "e")

    def names(table: PathTable, i: int) -> tuple[str, ...]:
        return tuple(table.channels[c] for c in table.codes[table.offsets[i] : table.offsets[i + 1]])

    whole_rows = {names(auto.paths, i): i for i in range(auto.paths.height)}
    got, want = auto.path_shares(sub), auto.path_shares()
    assert got[:, 1].max() > 0.01  # b's credit, from the pair among others
    for i in range(sub.height):
        np.testing.assert_allclose(got[i], want[whole_rows[names(sub, i)], 1:], rtol=1e-12, atol=1e-15)


def frames_of(users: list) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Touchpoints and conversions (docs/contract.md §1) of :func:`world`'s users, from 2026-01-01."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tp: dict[str, list] = {"touchpoint_id": [], "anon_id": [], "occurred_at": [], "channel": []}
    cv: dict[str, list] = {"conversion_id": [], "anon_id": [], "occurred_at": [], "value_micros": []}
    for u, (codes, times, converted) in enumerate(users):
        for i, (c, t) in enumerate(zip(codes, times, strict=True)):
            tp["touchpoint_id"].append(f"t{u}-{i}")
            tp["anon_id"].append(f"u{u}")
            tp["occurred_at"].append(start + timedelta(days=float(t)))
            tp["channel"].append(CHANNELS[c])
        if converted is not None:
            cv["conversion_id"].append(f"c{u}")
            cv["anon_id"].append(f"u{u}")
            cv["occurred_at"].append(start + timedelta(days=float(converted)))
            cv["value_micros"].append(1_000_000)
    return pl.DataFrame(tp), pl.DataFrame(cv)


@pytest.mark.parametrize("mech", ["journey_decay", "touch_decay"])
def test_effects_that_fade_in_days_are_read_from_the_touches_times(mech) -> None:
    users: list = []
    _, truth = world(mech, 6_000, seed=11, users=users, spread=1.5)  # irregular gaps: touches are not days
    tp, cv = frames_of(users)
    result = oq.attribute(tp, cv, models=["DATA_DRIVEN"], lookback=timedelta(days=365))
    timed = result.fitted["DATA_DRIVEN"]
    assert timed.paths.gaps is not None and "days" in timed.mechanism, timed.form_selection
    assert timed.mechanism.startswith({"touch_decay": "per-touch", "journey_decay": "journey-end"}[mech])
    best = timed.form_selection.row(0, named=True)
    assert 2.0 <= best["half_life_days"] <= 4.5  # the worlds' half-life is 3 days
    untimed = oq.models.DataDriven().fit(replace(timed.paths, gaps=None))  # the same journeys without times
    assert half_l1(timed, truth) < 0.05
    assert half_l1(timed, truth) < half_l1(untimed, truth)


def test_channels_that_fade_at_their_own_speed_get_their_own_half_lives() -> None:
    users: list = []
    _, truth = world("touch_own", 12_000, seed=5, users=users, spread=1.0)
    tp, cv = frames_of(users)
    fit = oq.attribute(tp, cv, models=["DATA_DRIVEN"], lookback=timedelta(days=365)).fitted["DATA_DRIVEN"]
    assert fit.mechanism.startswith("per-touch hazard"), fit.form_selection
    model = fit.conversion_model
    assert model.half_lives is not None, fit.form_selection
    own = dict(zip(fit.paths.channels, model.half_lives, strict=True))
    assert own["d"] > 2 * model.half_life  # the slow channel, and only a fast one may move the other way
    assert all(own[c] <= model.half_life * 1.01 for c in ("a", "b")), own
    assert "d " in fit.mechanism and "d " in fit.form_selection.row(0, named=True)["own_half_lives"]
    assert half_l1(fit, truth) < 0.045  # 0.035 (0.050 with one half-life for all)
    # a partition's table without "a": the same values per path, the half-lives by channel name
    mapped = model.for_channels(("b", "c", "d", "e"), fit.paths.channels)
    assert mapped.half_lives == tuple(own[c] for c in ("b", "c", "d", "e"))


# --- the whole-journey model against the brute-force reference (tests/reference/data_driven.py) ---------

SMALL = pl.DataFrame(
    {
        "path": [["a"], ["a", "b"], ["b", "b", "c"], ["c", "a", "b", "a"], ["b"], ["a", "c", "c", "c", "b", "a", "b"]],
        "conv": [3, 2, 1, 4, 0, 2],
        "null": [5, 1, 6, 2, 7, 3],
    }
)


def _random_params(form: str, n_codes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.7, 2 + 4 * n_codes + jm.N_BUCKETS)
    x[0] -= 2.0
    x[1 + n_codes] -= 1.0
    return x


def _as_reference(params: np.ndarray, form: str, rho: float, channels: tuple[str, ...], sat: float = 1.0) -> dict:
    c = len(channels)
    return {
        "form": form,
        "rho": rho,
        "sat": sat,
        "b_h": params[0],
        "beta_h": dict(zip(channels, params[1 : 1 + c], strict=True)),
        "b_p": params[1 + c],
        "beta_p": dict(zip(channels, params[2 + c : 2 + 2 * c], strict=True)),
        "g": list(params[2 + 2 * c : 2 + 2 * c + jm.N_BUCKETS]),
        "gamma": dict(zip(channels, params[2 + 2 * c + jm.N_BUCKETS : 2 + 3 * c + jm.N_BUCKETS], strict=True)),
        "gamma_prev": dict(zip(channels, params[2 + 3 * c + jm.N_BUCKETS :], strict=True)),
    }


def _small_table(timed: bool) -> tuple[PathTable, list[tuple[str, ...]], list[list[float] | None]]:
    """SMALL as a path table (timed: each touch at random days, gaps from minutes to months), and per row its
    path and, timed, its touches' days as docs/data_driven.md §2 represents them (reference buckets)."""
    rng = np.random.default_rng(3)
    names = sorted({c for p in SMALL["path"] for c in p})
    paths = [tuple(p) for p in SMALL["path"]]
    codes = np.array([names.index(c) for p in paths for c in p], dtype=np.int32)
    ends = np.cumsum([len(p) for p in paths])
    starts = ends - np.array([len(p) for p in paths])
    gaps = np.exp(rng.uniform(np.log(1 / 300), np.log(90), codes.shape[0]))  # days
    times = np.round(np.cumsum(gaps) * 86_400e6).astype(np.int64)
    table, rows = build_path_table(
        starts,
        ends,
        codes,
        names,
        SMALL["conv"].to_numpy().astype(float),
        SMALL["null"].to_numpy().astype(float),
        np.zeros(len(paths), dtype=np.int64),
        transform="frequency",
        times=times if timed else None,
    )
    row_paths: list[tuple[str, ...]] = [()] * table.height
    row_days: list[list[float] | None] = [None] * table.height
    for q, path in enumerate(paths):
        row_paths[rows[q]] = path
        if timed:
            t = times[starts[q] : ends[q]] / 86_400e6
            steps = [0.0] + [ref.gap_representative(b - a) for a, b in zip(t[:-1], t[1:], strict=True)]
            row_days[rows[q]] = list(np.cumsum(steps))
    return table, row_paths, row_days


def test_timed_paths_bucket_gaps_as_the_reference_and_keep_them_apart() -> None:
    table, row_paths, row_days = _small_table(timed=True)
    assert table.gaps is not None and table.gaps.dtype == np.int8
    for p in range(table.height):
        a, e = table.offsets[p], table.offsets[p + 1]
        assert table.gaps[a] == 0  # a path's first touch
        np.testing.assert_allclose(np.cumsum(table.gap_days()[a:e]), row_days[p], rtol=1e-8)
    # equal channel sequences with other gaps are other paths; equal gaps merge; concat keeps them
    both = PathTable.concat([table, table])
    assert both.height == table.height and both.gaps is not None
    np.testing.assert_array_equal(both.conversions, 2 * table.conversions)
    untimed, _, _ = _small_table(timed=False)
    with pytest.raises(oq.ConfigError, match="timed"):
        PathTable.concat([table, untimed])


@pytest.mark.parametrize(("timed", "rho", "sat", "half_life"), [(False, 0.7, 1.0, math.inf), (True, 1.0, 0.6, 2.0)])
def test_end_stocks_equal_the_reference(timed, rho, sat, half_life) -> None:
    table, row_paths, row_days = _small_table(timed=timed)
    off, code, value = jm.end_stocks(
        table.offsets, table.codes, len(table.channels), step_decays(table, rho, half_life), sat
    )
    for p in range(table.height):
        path = row_paths[p]
        want = ref.journey_stock(path, len(path), rho, sat, row_days[p], half_life)
        got = {table.channels[c]: v for c, v in zip(code[off[p] : off[p + 1]], value[off[p] : off[p + 1]], strict=True)}
        assert list(got) == list(dict.fromkeys(path))  # first-occurrence order, as count_features
        assert got == pytest.approx(want, rel=1e-12)


@given(gap=st.floats(min_value=0.0, max_value=400.0), scale=st.sampled_from([1.0, 1e-3, 1e-6]))
def test_gap_buckets_equal_the_reference(gap, scale) -> None:
    from optiq_engine.kernels.paths import GAP_DAYS, gap_bucket

    days = gap * scale
    us = round(days * 86_400e6)
    edge_free = all(abs(us - 900e6 * 2 ** (k / 4)) > 2 for k in range(49))  # exact bounds: micros vs floats
    if edge_free:
        assert GAP_DAYS[gap_bucket(us)] == pytest.approx(ref.gap_representative(us / 86_400e6), rel=1e-8)


@pytest.mark.parametrize(
    ("form", "rho", "sat", "half_life"),
    [
        ("touch", 1.0, 1.0, math.inf),
        ("journey", 0.6, 1.0, math.inf),
        ("both", 0.6, 1.0, math.inf),
        ("touch", 1.0, 0.5, math.inf),
        ("journey", 1.0, 0.7, math.inf),
        ("journey", 1.0, 0.0, math.inf),  # presence alone
        ("both", 0.8, 0.6, math.inf),
        ("touch", 1.0, 1.0, 3.0),
        ("journey", 0.7, 1.0, 1.0),
        ("both", 1.0, 0.6, 10.0),
        ("both", 1.0, 1.0, -3.0),  # each channel its own half-life (-: 3 days and others)
        ("touch", 1.0, 0.7, -3.0),
    ],
)
def test_likelihood_gradient_and_shapley_equal_the_reference(form, rho, sat, half_life) -> None:
    table, row_paths, row_days = _small_table(timed=math.isfinite(half_life))
    own = tuple(np.geomspace(-half_life / 3, -half_life * 3, len(table.channels))) if half_life < 0 else None
    half_life = abs(half_life)
    decay = step_decays(table, rho, half_life, own)
    params = _random_params(form, len(table.channels), seed=hash((form, rho, sat)) % 1000)
    use_h, use_p = form in ("touch", "both"), form in ("journey", "both")

    like = Likelihood.of(table, decay, sat, (table.conversions, table.nulls))
    assert set((like.tree[-1] // jm.N_POSITIONS).tolist()) == set(range(jm.N_STAGES))  # every funnel stage

    def terms(x: np.ndarray) -> tuple[float, np.ndarray]:
        return like.terms(x, use_h, use_p, 0.0)

    loss, grad = terms(params)
    model = _as_reference(params, form, rho, table.channels, sat)
    model["half_life"] = half_life if own is None else dict(zip(table.channels, own, strict=True))
    model["funnel"] = ref.funnel(row_paths, table.conversions.tolist(), table.nulls.tolist(), jm.N_STAGES)
    assert loss == pytest.approx(_reference_nll(table, row_paths, row_days, model), rel=1e-10)
    active = [i for i in range(params.shape[0]) if abs(grad[i]) > 0]
    for i in active:
        e = np.zeros_like(params)
        e[i] = 1e-6
        assert grad[i] == pytest.approx((terms(params + e)[0] - terms(params - e)[0]) / 2e-6, rel=1e-5, abs=1e-7)
    fused_loss, fused_grad, hess = like.hessian(params, use_h, use_p, 0.0)
    assert fused_loss == pytest.approx(loss, rel=1e-12)  # the one-pass Hessian's loss and gradient
    np.testing.assert_allclose(fused_grad, grad, rtol=1e-10, atol=1e-12)
    for i in active:
        e = np.zeros_like(params)
        e[i] = 1e-6
        numeric = (terms(params + e)[1] - terms(params - e)[1]) / 2e-6
        np.testing.assert_allclose(hess[i, active], numeric[active], rtol=1e-5, atol=1e-6)
    held = np.zeros_like(params)  # an intent term in every coalition (calibrated fits)
    c = len(table.channels)
    held[1 : 2 + 2 * c] = np.random.default_rng(7).normal(0, 0.3, 1 + 2 * c)
    held[1 + c] = 0.0
    model["held_h"] = dict(zip(table.channels, held[1 : 1 + c], strict=True))
    model["held_p"] = dict(zip(table.channels, held[2 + c : 2 + 2 * c], strict=True))
    cand = JourneyModel(params, form, rho, 0.0, 1, 1.0, sat, held, half_life, half_lives=own)
    _assert_shapley_equals_reference(cand, table, row_paths, row_days, model)
    for p in range(table.height):
        path, days = row_paths[p], row_days[p]
        drop = table.channels.index(path[0])
        p_all = ref.journey_model_probability(path, model, days=days)
        p_drop = ref.journey_model_probability(path, model, frozenset(set(path) - {path[0]}), days)
        assert cand.predict(table)[p] == pytest.approx(p_all, rel=1e-12)
        assert cand.predict(table, drop=drop)[p] == pytest.approx(p_drop, rel=1e-12)
    weights = table.conversions + table.nulls
    code = table.channels.index("a")
    none = np.zeros((0, 3), dtype=np.int64)
    lift, lgrad, lgrad_held = jm.nested_lift(
        params, held, table.offsets, table.codes, weights, decay, sat, use_h, use_p, none, code
    )
    assert lift == pytest.approx(
        float(np.dot(weights, cand.predict(table) - cand.predict(table, drop=code))), rel=1e-10
    )

    def lift_at(x: np.ndarray, y: np.ndarray) -> float:
        return jm.nested_lift(x, y, table.offsets, table.codes, weights, decay, sat, use_h, use_p, none, code)[0]

    for i in range(params.shape[0]):
        e = np.zeros_like(params)
        e[i] = 1e-6
        numeric = (lift_at(params + e, held) - lift_at(params - e, held)) / 2e-6
        assert lgrad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
        numeric = (lift_at(params, held + e) - lift_at(params, held - e)) / 2e-6
        assert lgrad_held[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


# --- experiments -------------------------------------------------------------------------------------


def test_a_calibrated_fit_moves_the_tested_channel_into_its_interval(worlds) -> None:
    frame, _ = worlds["journey"]
    table = table_of(frame)
    free = oq.models.DataDriven(form="auto").fit(table)
    model = free.conversion_model
    code = table.channels.index("a")
    lift = float(np.dot(table.conversions + table.nulls, model.predict(table) - model.predict(table, drop=code)))
    target = oq.Experiment("a", incremental_conversions=0.5 * lift, std_error=0.05 * lift)
    fit = oq.models.DataDriven(form="auto", experiments=[target]).fit(table)
    check = fit.experiment_checks.row(0, named=True)
    assert abs(check["z"]) < 0.1, check  # met within a tenth of its error
    assert check["observational_incremental"] == pytest.approx(lift, rel=0.02)  # what the data alone say
    share = dict(zip(table.channels, fit.shares.tolist(), strict=True))
    before = dict(zip(table.channels, free.shares.tolist(), strict=True))
    assert share["a"] < before["a"] - 0.05  # the tested channel moved
    assert "experiment on a" in fit._repr_html_()


def test_a_test_below_what_no_effect_gives_is_met_at_zero_effect_or_refused(worlds) -> None:
    """Effects are non-negative: a result a little below the least holdout effect they give (within
    ``_BELOW_ZERO_Z`` errors) is met as nearly as they allow, the tested channel's effects at 0; one far below it
    is refused in one line (before 2026-12-08 the shift went negative and met -300 with a negative effect)."""
    from optiq_engine.errors import ModelError

    frame, _ = worlds["journey"]
    table = table_of(frame)
    near = oq.models.DataDriven(form="auto", experiments=[oq.Experiment("a", -20.0, 30.0)]).fit(table)
    check = near.experiment_checks.row(0, named=True)
    assert check["model_incremental"] == pytest.approx(0.0, abs=1e-6) and 0 < check["z"] < 1
    code = table.channels.index("a")
    for _, cand in near.mixture:
        assert (cand.params[[1 + code, 2 + cand.n_codes + code]] >= 0).all()
    with pytest.raises(ModelError, match="standard errors below .* non-negative"):
        oq.models.DataDriven(form="auto", experiments=[oq.Experiment("a", -300.0, 50.0)]).fit(table)
    # a bootstrap replicate draws the result from its error: a draw far below 0 is met with no effect, not refused
    edge = oq.models.DataDriven(form="auto", bootstrap=8, experiments=[oq.Experiment("a", -80.0, 30.0)]).fit(table)
    assert np.isfinite(edge.replicates).all()


def test_experiment_validation_and_settings() -> None:
    with pytest.raises(oq.ConfigError, match="std_error"):
        oq.Experiment("a", 10.0, 0.0)
    with pytest.raises(oq.ConfigError, match="start"):
        oq.Experiment("a", 10.0, 1.0, datetime(2026, 2, 1), datetime(2026, 1, 1))
    with pytest.raises(oq.ConfigError, match="form='auto'"):
        oq.models.DataDriven(form="touch", experiments=[oq.Experiment("a", 10.0, 1.0)])
    # a new user's values (audit of 2026-12-08): one line each, never a traceback from the fit
    for bad, match in [
        (dict(std_error=1e-300), "at least 1e-06"),
        (dict(incremental_conversions=10**400), "finite number, got 1000000000000000000000000000000000000..."),
        (dict(end=date.max), "past the last representable day"),
        (dict(start=pd.NaT), "NaT"),
        (dict(start="2026-03-01"), r"date.fromisoformat"),
        (dict(start=date(2026, 3, 31), end=date(2026, 3, 1)), "start 2026-03-31 is not before end 2026-03-01"),
    ]:
        with pytest.raises(oq.ConfigError, match=match):
            oq.Experiment(**({"channel": "a", "incremental_conversions": 10.0, "std_error": 1.0} | bad))
    assert oq.Experiment(" email ", np.int64(120), np.float32(15)) == oq.Experiment("email", 120.0, 15.0)
    data = oq.synthetic.generate(n_users=200, seed=0)  # experiments without DATA_DRIVEN were ignored in silence
    with pytest.raises(oq.ConfigError, match="experiments calibrate DATA_DRIVEN, which the run does not have"):
        oq.attribute(data.touchpoints, data.conversions, experiments=[oq.Experiment("emial", 1e9, 1.0)])
    from optiq_engine.experiments import experiments_from_json

    one = {"channel": "a", "incremental_conversions": 1, "std_error": 1}
    with pytest.raises(oq.ConfigError, match=r"'20260331' is neither a date 'YYYY-MM-DD'"):
        experiments_from_json([one | {"end": "20260331"}])  # Python reads it as midnight: the day would drop
    with pytest.raises(oq.ConfigError, match="give one of incremental_conversions or incrementalConversions"):
        experiments_from_json([one | {"incrementalConversions": 5}])
    from optiq_engine.batch import settings_from_json

    options, _ = settings_from_json(
        {
            "experiments": [
                {
                    "channel": "email",
                    "incremental_conversions": 12,
                    "std_error": 3,
                    "start": "2026-01-01",
                    "end": "2026-02-01Z",
                }
            ]
        }
    )
    (e,) = options["experiments"]
    assert e == oq.Experiment("email", 12.0, 3.0, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    # Dates are whole days, both included (a test's report "Mar 1 - Mar 31"), in Python and in JSON.
    march = oq.Experiment("email", 1.0, 1.0, date(2026, 3, 1), date(2026, 3, 31))
    assert (march.start, march.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    (j,) = settings_from_json(
        {
            "experiments": [
                {
                    "channel": "email",
                    "incremental_conversions": 1,
                    "std_error": 1,
                    "start": "2026-03-01",
                    "end": "2026-03-31",
                }
            ]
        }
    )[0]["experiments"]
    assert j == march and oq.Experiment("email", 1.0, 1.0, date(2026, 3, 1), date(2026, 3, 1)).end == datetime(
        2026, 3, 2, tzinfo=UTC
    )
    named = oq.models.DataDriven.from_config(oq.AttributionConfig(**options))
    assert named.experiments == (e,) and named.form == "auto"
    with pytest.raises(oq.ConfigError, match=r"experiments\[0\].std_error is missing"):
        settings_from_json({"experiments": [{"channel": "email", "incremental_conversions": 1}]})
    table = table_of(SMALL)
    with pytest.raises(oq.ModelError, match="no fitted journey"):
        oq.models.DataDriven(form="auto", experiments=[oq.Experiment("zz", 1.0, 1.0)]).fit(table)
    journeys = float((table.conversions + table.nulls).sum())  # a channel cannot cause more conversions
    with pytest.raises(oq.ModelError, match="no effect of the channel gives its incremental_conversions"):
        oq.models.DataDriven(form="auto", experiments=[oq.Experiment("a", journeys, 1.0)]).fit(table)


def test_experiments_in_attribute_count_the_journeys_of_their_period() -> None:
    data = oq.synthetic.generate(n_users=1_500, seed=5)
    cv = data.conversions
    times = cv.get_column("occurred_at").sort()
    middle = times[times.len() // 2]
    channel = data.touchpoints.get_column("channel").drop_nulls().mode()[0]
    test = oq.Experiment(channel, 5.0, 1.0, start=None, end=middle)
    result = oq.attribute(data.touchpoints, cv, models=[oq.models.DataDriven(form="auto", experiments=[test])])
    fit = result.fitted["DATA_DRIVEN"]
    check = fit.experiment_checks.row(0, named=True)
    total = float(fit.paths.conversions.sum() + fit.paths.nulls.sum())
    assert 0 < check["journeys"] < total
    assert abs(check["z"]) < 3
    # a lift test counts every conversion: a period of all time holds the later journeys of repeat buyers too
    # (each follows a conversion), not only the first journeys the fit reads
    whole = oq.Experiment(channel, 5.0, 1.0)
    with warnings.catch_warnings():  # open on both sides: all of the data, nothing to warn about
        warnings.simplefilter("error", oq.errors.OptiqWarning)
        result = oq.attribute(data.touchpoints, cv, models=[oq.models.DataDriven(form="auto", experiments=[whole])])
    journeys = result.fitted["DATA_DRIVEN"].experiment_checks.row(0, named=True)["journeys"]
    assert total < journeys <= total + cv.height
    # a period past the data is met by the journeys the data hold: said, and the checks show the period
    from optiq_engine.errors import OptiqWarning

    late = oq.Experiment(channel, 5.0, 1.0, start=middle, end=datetime(2100, 1, 1))
    with pytest.warns(OptiqWarning, match="runs past the data, whose journeys end from"):
        result = oq.attribute(data.touchpoints, cv, models=[oq.models.DataDriven(form="auto", experiments=[late])])
    row = result.fitted["DATA_DRIVEN"].experiment_checks.row(0, named=True)
    assert (row["start"], row["end"]) == (late.start, late.end)
    # a date read as a UTC day while the data's naive times are read in another zone: said
    naive_tp = data.touchpoints.with_columns(
        pl.col("occurred_at").dt.convert_time_zone("Europe/Berlin").dt.replace_time_zone(None)
    )
    naive_cv = cv.with_columns(pl.col("occurred_at").dt.convert_time_zone("Europe/Berlin").dt.replace_time_zone(None))
    day = oq.Experiment(channel, 5.0, 1.0, start=date(2026, 1, 1))
    assert day.naive and late.naive and not oq.Experiment(channel, 5.0, 1.0, start=middle).naive
    with pytest.warns(OptiqWarning, match="dates or naive datetimes are read as UTC, while .* Europe/Berlin"):
        oq.attribute(
            naive_tp,
            naive_cv,
            models=[oq.models.DataDriven(experiments=[day])],
            timezone="Europe/Berlin",
            on_invalid="quarantine",
        )


def test_bootstrap_refits_the_choice_and_one_newton_step_matches_a_refit(worlds) -> None:
    from optiq_engine.kernels.bootstrap import poisson_counts
    from optiq_engine.models.conversion import _fit_one, _one_step_solver, choose_candidates

    frame, _ = worlds["touch"]
    table = table_of(frame)
    fit = oq.models.DataDriven(form="auto", bootstrap=6, seed=3).fit(table)
    cc = fit.channel_credit
    assert fit.replicates.shape == (6, len(CHANNELS))
    assert (cc.get_column("ci_low") <= cc.get_column("share")).all()
    candidates, weights = choose_candidates(table, l2=1.0, seed=0)
    best = candidates[int(np.argmax(weights))]
    counts = poisson_counts(table.hashes, table.conversions, table.nulls, 0, 1)
    one = _one_step_solver(best, table, 1.0)(counts, True)
    full = _fit_one(table, best.form, best.rho, l2=1.0, counts=counts, start=best.params, sat=best.sat)
    effects = slice(0, 2 + 2 * len(CHANNELS))  # (the ending logits of sparse positions are nearly flat)
    np.testing.assert_allclose(one.params[effects], full.params[effects], atol=0.03)
    assert abs(one.nll - full.nll) < 0.01 * abs(full.nll)


def _reference_nll(table: PathTable, row_paths, row_days, model: dict) -> float:
    """The negative log-likelihood of ``table``'s journeys under the reference's whole-journey ``model``."""
    nll = 0.0
    for p in range(table.height):
        path, days = row_paths[p], row_days[p]
        nll -= table.conversions[p] * math.log(ref.journey_model_likelihood(path, True, model, days))
        nll -= table.nulls[p] * math.log(ref.journey_model_likelihood(path, False, model, days))
    return nll


def _assert_shapley_equals_reference(cand: JourneyModel, table: PathTable, row_paths, row_days, model: dict) -> None:
    """``cand``'s Shapley values (exact) equal the reference's per path and channel."""
    phi, sampled = cand.path_shapley(table, samples=100, seed=0)
    assert sampled == 0
    at = 0
    for path, days in zip(row_paths, row_days, strict=True):
        want = ref.journey_model_shapley(path, model, days)
        first = list(dict.fromkeys(path))
        np.testing.assert_allclose(phi[at : at + len(first)], [want[c] for c in first], rtol=1e-10, atol=1e-13)
        at += len(first)


@pytest.mark.parametrize(("form", "half_life"), [("journey", math.inf), ("both", math.inf), ("journey", 3.0)])
def test_pair_effects_equal_the_reference(form, half_life) -> None:
    """The end part's pair effects (docs/data_driven.md §6.1, "Pairs"): likelihood, gradient, Hessian,
    Shapley values, predictions and holdout lifts against the per-journey reference."""
    table, row_paths, row_days = _small_table(timed=math.isfinite(half_life))
    c = len(table.channels)
    # a with b, b with c, c then a, b first, a first
    pairs = np.array([[0, 1, 0], [1, 2, 0], [2, 0, 1], [1, 1, 2], [0, 0, 2]], dtype=np.int64)
    n = c + pairs.shape[0]
    decay = step_decays(table, 0.8, half_life)
    params = _random_params(form, n, seed=11)
    params[1 + c : 1 + n] = 0.0  # no pair effect in the touch part, nor in the ending (unused slots)
    params[2 + 2 * n + jm.N_BUCKETS + c : 2 + 3 * n + jm.N_BUCKETS] = 0.0
    params[2 + 3 * n + jm.N_BUCKETS + c :] = 0.0
    use_h, use_p = form in ("touch", "both"), True
    cand = JourneyModel(params, form, 0.8, 0.0, 1, 1.0, 0.9, None, half_life, pairs)
    ending = 2 + 2 * n + jm.N_BUCKETS
    model = {
        "form": form,
        "rho": 0.8,
        "sat": 0.9,
        "half_life": half_life,
        "b_h": params[0],
        "beta_h": dict(zip(table.channels, params[1 : 1 + c], strict=True)),
        "b_p": params[1 + n],
        "beta_p": dict(zip(table.channels, params[2 + n : 2 + n + c], strict=True)),
        "pairs": {("a", "b"): params[2 + n + c], ("b", "c"): params[2 + n + c + 1]},
        "ordered_pairs": {("c", "a"): params[2 + n + c + 2]},
        "first_effects": {"b": params[2 + n + c + 3], "a": params[2 + n + c + 4]},
        "g": list(params[2 + 2 * n : ending]),
        "gamma": dict(zip(table.channels, params[ending : ending + c], strict=True)),
        "gamma_prev": dict(zip(table.channels, params[ending + n : ending + n + c], strict=True)),
        "funnel": ref.funnel(row_paths, table.conversions.tolist(), table.nulls.tolist(), jm.N_STAGES),
    }
    like = Likelihood.of(table, decay, 0.9, (table.conversions, table.nulls), pairs)
    loss, grad = like.terms(params, use_h, use_p, 0.0)
    assert loss == pytest.approx(_reference_nll(table, row_paths, row_days, model), rel=1e-10)
    _, _, hess = like.hessian(params, use_h, use_p, 0.0)
    for i in range(2 + n + c, 2 + 2 * n):  # the pair effects' gradient and Hessian rows, numerically
        e = np.zeros_like(params)
        e[i] = 1e-6
        up, down = like.terms(params + e, use_h, use_p, 0.0), like.terms(params - e, use_h, use_p, 0.0)
        assert grad[i] == pytest.approx((up[0] - down[0]) / 2e-6, rel=1e-5, abs=1e-7)
        np.testing.assert_allclose(hess[i], (up[1] - down[1]) / 2e-6, rtol=1e-5, atol=1e-6)
    _assert_shapley_equals_reference(cand, table, row_paths, row_days, model)
    for p in range(table.height):
        path, days = row_paths[p], row_days[p]
        for drop in range(c):
            keep = frozenset(set(path) - {table.channels[drop]})
            want_p = ref.journey_model_probability(path, model, keep, days)
            assert cand.predict(table, drop=drop)[p] == pytest.approx(want_p, rel=1e-12)
    weights = table.conversions + table.nulls
    for code in range(c):
        lift, lgrad, _ = jm.nested_lift(
            params, cand.held, table.offsets, table.codes, weights, decay, 0.9, use_h, use_p, cand.pair_slots(), code
        )
        assert lift == pytest.approx(float(np.dot(weights, cand.predict(table) - cand.predict(table, drop=code))))
        for i in range(2 + n + c, 2 + 2 * n):  # the pair effects
            e = np.zeros_like(params)
            e[i] = 1e-6
            args = (table.offsets, table.codes, weights, decay, 0.9, use_h, use_p, cand.pair_slots(), code)
            numeric = (
                jm.nested_lift(params + e, cand.held, *args)[0] - jm.nested_lift(params - e, cand.held, *args)[0]
            ) / 2e-6
            assert lgrad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_terms_fitted_on_the_decision_alone_equal_the_whole_likelihood_fit() -> None:
    """pair_terms.with_terms refits only the end decision (the journey form's likelihood separates): its
    log-likelihood is the prefix tree's at its parameters, and its optimum that of the whole fit."""
    from optiq_engine.models.data_driven.journey_model import _fit_one, _start
    from optiq_engine.models.data_driven.pair_terms import _with_term_slots, with_terms

    frame, _ = world("journey_then", 3_000, seed=8)
    table = table_of(frame)
    counts = (table.conversions, table.nulls)
    base = _fit_one(table, "journey", 1.0, l2=1.0, counts=counts, start=_start(table, counts), sat=0.7)
    terms = np.array([[1, 3, 1], [0, 2, 0], [4, 4, 2]], dtype=np.int64)  # b then d, a with c, e first
    fast = with_terms(table, base, terms, 0.0, l2=1.0, counts=counts)
    like = Likelihood.of(table, fast.decays(table), fast.sat, counts, terms)
    assert fast.nll == pytest.approx(like.terms(fast.params, False, True, 0.0)[0], rel=1e-10)
    whole = _fit_one(
        table,
        "journey",
        1.0,
        l2=1.0,
        counts=counts,
        start=_with_term_slots(base.params, len(table.channels), 3),
        sat=0.7,
        pairs=terms,
    )
    assert fast.nll == pytest.approx(whole.nll, rel=1e-7)
    np.testing.assert_allclose(fast.params, whole.params, atol=2e-3)
    assert fast.n_params == whole.n_params
