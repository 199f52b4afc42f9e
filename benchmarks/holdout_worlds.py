"""Holdout worlds: a second, independent simulator of marketing journeys with an exact Shapley ground truth.

Written on 2026-12-07 by a helper briefed from the engine's public frame contract and the truth definition of
docs/worlds.md §3 only, without reading the models, the kernels or the other simulators: mechanisms the
engine was not built around (three channels that act only together, substitutes, awareness by the first
touch, per-channel saturation, a per-touch hazard falling with the position, recency, the strongest channel
only). Scored by ``python -m benchmarks.holdout_accuracy`` (benchmarks/RESULTS.md "Holdout worlds"). Keep it
apart from the models: change a mechanism only to fix the simulator, never to suit a model.

Exposure (shared by every mechanism; same seed -> same exposures in every world):
  n_u = min(1 + Poisson(4), 25) touches; per-user mean gap g_u ~ U(2, 4) days; gaps Exp(g_u), at least
  1 s; a journey longer than 60 days is compressed into 60 days; journeys start uniformly in the first
  30 days of 2026.  Each touch's channel is drawn i.i.d. from EXPOSURE (direct and organic_search common);
  a user never has more than MAX_DISTINCT = 8 distinct channels (a draw that would add a 9th is replaced by
  a draw among the user's channels so far).  Intent zeta_u ~ N(0, 1), baseline log-odds
  b_u = alpha + 0.5 * zeta_u, independent of exposure.

Truth (docs/worlds.md §3): P_u(S) is u's conversion probability when only touches of channels in S have
effect (touches outside S add nothing and count in no feature; for per-touch deciders they remain
decision points).  v_u(S) = P_u(S) - P_u(empty) over u's distinct channels; exact Shapley values by
enumerating all 2^m subsets.  Positions (first touch, last two touches, the hazard's position term) are
positions in the user's *whole* exposure sequence: exposure is held fixed, only effects are removed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

CHANNELS = (
    "direct",
    "organic_search",
    "paid_search",
    "google_ads",
    "meta_ads",
    "tiktok_ads",
    "display",
    "video",
    "email",
    "affiliate",
    "referral",
    "paid_social",
)
C = len(CHANNELS)
CI = {c: i for i, c in enumerate(CHANNELS)}

EXPOSURE = {
    "direct": 0.22,
    "organic_search": 0.18,
    "paid_search": 0.07,
    "google_ads": 0.07,
    "meta_ads": 0.08,
    "tiktok_ads": 0.04,
    "display": 0.08,
    "video": 0.05,
    "email": 0.08,
    "affiliate": 0.03,
    "referral": 0.04,
    "paid_social": 0.06,
}
MEAN_EXTRA_TOUCHES = 4.0
MAX_TOUCHES = 25
MAX_DISTINCT = 8
MAX_SPAN_DAYS = 60.0
START_SPREAD_DAYS = 30.0
INTENT_SD = 0.5
START = datetime(2026, 1, 1, tzinfo=UTC)
US_PER_DAY = 86_400_000_000


def _vec(d: dict[str, float]) -> np.ndarray:
    v = np.zeros(C)
    for k, x in d.items():
        v[CI[k]] = x
    return v


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------------------------------
# Mechanisms.  Each: kind "end" (one decision at last touch + U(0.5, 1.5) days) or "touch" (each touch a
# decision point), an intercept alpha, and parameters.  `effect(ctx)` gives the logit increment for every
# user x subset (end, shape (B, M)) or user x subset x touch (touch, shape (B, M, N)).
# --------------------------------------------------------------------------------------------------

MECHANISMS: dict[str, dict[str, Any]] = {
    "three_way": dict(
        kind="end",
        alpha=-3.0,
        triple=("organic_search", "display", "email"),
        triple_effect=2.0,
        beta={"paid_search": 0.35, "google_ads": 0.20, "affiliate": 0.40, "meta_ads": 0.15},
        doc="end; logit = b + 2.0*1[organic_search & display & email all touched] + sum_c beta_c n_c "
        "(paid_search .35, google_ads .20, affiliate .40, meta_ads .15)",
    ),
    "substitutes": dict(
        kind="end",
        alpha=-3.0,
        pair=("paid_search", "google_ads"),
        pair_effect=1.2,
        beta={"email": 0.25, "meta_ads": 0.15, "affiliate": 0.40, "video": 0.10},
        doc="end; logit = b + 1.2*1[paid_search OR google_ads touched] + sum_c beta_c n_c "
        "(email .25, meta_ads .15, affiliate .40, video .10)",
    ),
    "first_touch_awareness": dict(
        kind="end",
        alpha=-3.0,
        first={"display": 1.2, "video": 1.4, "tiktok_ads": 0.8, "meta_ads": 0.7, "organic_search": 0.3},
        beta={"email": 0.10, "paid_search": 0.15, "referral": 0.10},
        doc="end; logit = b + alpha_{c_1}*1[c_1 in S] (touch 1 of the whole sequence: display 1.2, video 1.4, "
        "tiktok .8, meta .7, organic .3) + sum_c beta_c n_c (email .10, paid_search .15, referral .10)",
    ),
    "channel_saturation": dict(
        kind="end",
        alpha=-3.1,
        beta={
            "display": 0.8,
            "affiliate": 0.8,
            "paid_search": 1.2,
            "meta_ads": 0.9,
            "video": 0.6,
            "email": 1.5,
            "organic_search": 0.6,
        },
        k={
            "display": 0.3,
            "affiliate": 0.3,
            "paid_search": 0.5,
            "meta_ads": 1.0,
            "video": 3.0,
            "email": 8.0,
            "organic_search": 10.0,
        },
        doc="end; logit = b + sum_c beta_c (1 - exp(-n_c/k_c)); (beta,k): display (.8,.3) affiliate (.8,.3) "
        "paid_search (1.2,.5) meta (.9,1) video (.6,3) email (1.5,8) organic (.6,10)",
    ),
    "hazard_with_fatigue": dict(
        kind="touch",
        alpha=-4.0,
        fatigue=0.15,
        beta={
            "email": 0.45,
            "paid_search": 0.55,
            "google_ads": 0.30,
            "meta_ads": 0.20,
            "affiliate": 0.60,
            "organic_search": 0.10,
            "video": 0.20,
        },
        doc="per-touch; p_j = sigmoid(b + sum_c beta_c x_c(j) - 0.15 (j-1)), x_c(j) touches of c in S up to "
        "and incl. j (email .45, paid_search .55, google_ads .30, meta .20, affiliate .60, organic .10, video .20)",
    ),
    "late_surge": dict(
        kind="end",
        alpha=-3.1,
        early_weight=0.2,
        late_touches=2,
        beta={
            "paid_search": 0.9,
            "email": 0.7,
            "paid_social": 0.8,
            "affiliate": 1.0,
            "google_ads": 0.5,
            "display": 0.3,
            "meta_ads": 0.4,
        },
        doc="end; logit = b + sum_j w_j beta_{c_j} 1[c_j in S], w_j = 1 for the last 2 touches of the whole "
        "sequence, .2 before (paid_search .9, email .7, paid_social .8, affiliate 1.0, google .5, display .3, meta .4)",
    ),
    "strongest_only": dict(
        kind="end",
        alpha=-3.0,
        beta={
            "video": 1.5,
            "paid_search": 1.3,
            "affiliate": 1.1,
            "email": 1.0,
            "meta_ads": 0.8,
            "google_ads": 0.7,
            "display": 0.6,
            "tiktok_ads": 0.5,
            "organic_search": 0.4,
        },
        doc="end; logit = b + max_{c in S touched} beta_c (only the strongest channel seen counts, however "
        "often; video 1.5, paid_search 1.3, affiliate 1.1, email 1.0, meta .8, google .7, display .6, tiktok .5, organic .4)",
    ),
}


@dataclass
class Ctx:
    """A chunk of users sharing the same number m of distinct channels."""

    bits: np.ndarray  # (M, m) bool: local channel k in subset S
    L: np.ndarray  # (B, N) local channel index per touch (0 for padding)
    G: np.ndarray  # (B, N) global channel index per touch (0 for padding)
    valid: np.ndarray  # (B, N) bool
    n_touch: np.ndarray  # (B,)
    glob: np.ndarray  # (B, m) global channel of each local channel
    cnt: np.ndarray  # (B, m) touches of each local channel
    _active: np.ndarray | None = None

    @property
    def active(self) -> np.ndarray:  # (B, M, N) touch j has effect under S
        if self._active is None:
            a = self.bits.T[self.L]  # (B, N, M)
            self._active = np.transpose(a, (0, 2, 1)) & self.valid[:, None, :]
        return self._active

    def n_local(self) -> np.ndarray:  # (B, M, m) touches of each local channel counted under S
        return self.bits[None, :, :] * self.cnt[:, None, :]

    def present(self, ch: str) -> np.ndarray:  # (B, M) channel touched and in S
        g = CI[ch]
        is_g = self.glob == g  # (B, m)
        return (self.bits[None, :, :] & is_g[:, None, :]).any(axis=2)


def _count_effect(ctx: Ctx, beta: np.ndarray) -> np.ndarray:
    bl = beta[ctx.glob] * ctx.cnt  # (B, m)
    return bl @ ctx.bits.T.astype(float)  # (B, M)


def effect(name: str, ctx: Ctx) -> np.ndarray:
    p = MECHANISMS[name]
    beta = _vec(p.get("beta", {}))
    if name == "three_way":
        allthree = np.ones(ctx.bits.shape[0], bool)[None, :]
        for ch in p["triple"]:
            allthree = allthree & ctx.present(ch)
        return p["triple_effect"] * allthree + _count_effect(ctx, beta)
    if name == "substitutes":
        a, b = p["pair"]
        either = ctx.present(a) | ctx.present(b)
        return p["pair_effect"] * either + _count_effect(ctx, beta)
    if name == "first_touch_awareness":
        first = _vec(p["first"])[ctx.G[:, 0]]  # (B,)
        return first[:, None] * ctx.active[:, :, 0] + _count_effect(ctx, beta)
    if name == "channel_saturation":
        k = _vec(p["k"])
        k[k == 0] = 1.0
        n = ctx.n_local()
        return (beta[ctx.glob][:, None, :] * (1.0 - np.exp(-n / k[ctx.glob][:, None, :]))).sum(axis=2)
    if name == "hazard_with_fatigue":
        per = ctx.active * beta[ctx.G][:, None, :]
        return np.cumsum(per, axis=2)  # (B, M, N)
    if name == "late_surge":
        j = np.arange(ctx.L.shape[1])[None, :]
        w = np.where(j >= ctx.n_touch[:, None] - p["late_touches"], 1.0, p["early_weight"]) * ctx.valid
        return (ctx.active * (w * beta[ctx.G])[:, None, :]).sum(axis=2)
    if name == "strongest_only":
        bl = beta[ctx.glob]  # (B, m), all >= 0
        return np.where(ctx.bits[None, :, :], bl[:, None, :], 0.0).max(axis=2)
    raise KeyError(name)


def prob_all_subsets(name: str, ctx: Ctx, base: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """P_u(S) for every user and subset (B, M); for per-touch kinds also the hazards under S = all (B, N)."""
    p = MECHANISMS[name]
    eff = effect(name, ctx)
    if p["kind"] == "end":
        return sigmoid(base[:, None] + eff), None
    j = np.arange(ctx.L.shape[1])
    lin = base[:, None, None] + eff - p["fatigue"] * j[None, None, :]
    h = sigmoid(lin)
    logsurv = np.where(ctx.valid[:, None, :], np.log1p(-h), 0.0).sum(axis=2)
    return -np.expm1(logsurv), h[:, -1, :]


# --------------------------------------------------------------------------------------------------
# Shapley weights per m.
# --------------------------------------------------------------------------------------------------

_SH: dict[int, tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]] = {}


def shapley_tables(m: int):
    if m not in _SH:
        M = 1 << m
        masks = np.arange(M)
        bits = ((masks[:, None] >> np.arange(m)[None, :]) & 1).astype(bool)
        size = bits.sum(axis=1)
        W = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])
        per_i = []
        for i in range(m):
            idx0 = masks[~bits[:, i]]
            per_i.append((idx0, idx0 | (1 << i), W[size[idx0]]))
        _SH[m] = (bits, per_i)
    return _SH[m]


def shapley_from_P(P: np.ndarray, m: int) -> np.ndarray:
    _, per_i = shapley_tables(m)
    phi = np.empty((P.shape[0], m))
    for i, (i0, i1, w) in enumerate(per_i):
        phi[:, i] = (P[:, i1] - P[:, i0]) @ w
    return phi


# --------------------------------------------------------------------------------------------------
# Exposure
# --------------------------------------------------------------------------------------------------


@dataclass
class Exposure:
    n_users: int
    n_touch: np.ndarray  # (U,)
    offsets: np.ndarray  # (U+1,) into flat touch arrays
    channel: np.ndarray  # (T,) global channel id
    t_days: np.ndarray  # (T,) days since START, strictly increasing per user
    intent: np.ndarray  # (U,)


def draw_exposure(n_users: int, seed: int) -> Exposure:
    rng = np.random.default_rng([seed, 12345])
    n = np.minimum(1 + rng.poisson(MEAN_EXTRA_TOUCHES, n_users), MAX_TOUCHES)
    N = int(n.max())
    probs = np.array([EXPOSURE[c] for c in CHANNELS])
    probs = probs / probs.sum()
    ch = rng.choice(C, size=(n_users, N), p=probs)
    valid = np.arange(N)[None, :] < n[:, None]
    # enforce at most MAX_DISTINCT distinct channels per user (rarely binding)
    seen = np.zeros((n_users, C), bool)
    for j in range(N):
        v = valid[:, j]
        cj = ch[:, j]
        new = v & ~seen[np.arange(n_users), cj]
        over = new & (seen.sum(axis=1) >= MAX_DISTINCT)
        for u in np.flatnonzero(over):
            own = np.flatnonzero(seen[u])
            pr = probs[own] / probs[own].sum()
            ch[u, j] = rng.choice(own, p=pr)
        seen[np.arange(n_users)[v], ch[v, j]] = True
    mean_gap = rng.uniform(2.0, 4.0, n_users)
    gaps = rng.exponential(1.0, (n_users, N)) * mean_gap[:, None]
    gaps = np.maximum(gaps, 1.0 / 86400.0)
    gaps[:, 0] = 0.0
    gaps = np.where(valid, gaps, 0.0)
    rel = np.cumsum(gaps, axis=1)
    span = rel.max(axis=1)
    scale = np.where(span > MAX_SPAN_DAYS, MAX_SPAN_DAYS / np.maximum(span, 1e-12), 1.0)
    rel = rel * scale[:, None]
    start = rng.uniform(0.0, START_SPREAD_DAYS, n_users)
    t = start[:, None] + rel
    intent = rng.normal(0.0, 1.0, n_users)
    offsets = np.concatenate([[0], np.cumsum(n)])
    return Exposure(n_users, n, offsets, ch[valid], t[valid], intent)


# --------------------------------------------------------------------------------------------------
# World
# --------------------------------------------------------------------------------------------------


@dataclass
class World:
    mechanism: str
    seed: int
    touchpoints: pl.DataFrame
    conversions: pl.DataFrame
    truth: pl.DataFrame
    users: pl.DataFrame
    expected_conversions: float
    baseline_conversions: float
    params: dict[str, Any]
    seconds: float
    user_values: np.ndarray | None = None  # (U, C) phi per user and global channel
    exposure: Exposure | None = field(default=None, repr=False)


def _local_channels(exp: Exposure):
    """Per user: local index of each touch (order of first appearance), distinct count, local->global."""
    U = exp.n_users
    N = int(exp.n_touch.max())
    valid = np.arange(N)[None, :] < exp.n_touch[:, None]
    G = np.zeros((U, N), np.int64)
    G[valid] = exp.channel
    # local index: rank of the first appearance of the channel
    first_pos = np.full((U, C), N + 1)
    for j in range(N - 1, -1, -1):
        v = valid[:, j]
        first_pos[np.flatnonzero(v), G[v, j]] = j
    present = first_pos <= N
    m = present.sum(axis=1)
    order = np.argsort(first_pos, axis=1, kind="stable")  # local k -> global channel
    rank = np.empty_like(order)
    rank[np.arange(U)[:, None], order] = np.arange(C)[None, :]
    L = np.where(valid, rank[np.arange(U)[:, None], G], 0)
    cnt_g = np.zeros((U, C), np.int64)
    np.add.at(cnt_g, (np.repeat(np.arange(U), exp.n_touch), exp.channel), 1)
    cnt_local = cnt_g[np.arange(U)[:, None], order]
    return G, L, valid, m, order, cnt_local


def generate(
    mechanism: str,
    n_users: int = 50_000,
    seed: int = 0,
    *,
    keep_user_values: bool = False,
    chunk_cells: int = 3_000_000,
) -> World:
    t0 = time.perf_counter()
    p = MECHANISMS[mechanism]
    exp = draw_exposure(n_users, seed)
    rng = np.random.default_rng([seed, 777, list(MECHANISMS).index(mechanism)])
    base = p["alpha"] + INTENT_SD * exp.intent
    G, L, valid, m_u, order, cnt_local = _local_channels(exp)
    U = n_users
    phi_g = np.zeros((U, C))
    P_all = np.empty(U)
    P_none = np.empty(U)
    h_all = np.zeros(G.shape) if p["kind"] == "touch" else None
    for m in np.unique(m_u):
        m = int(m)
        bits, _ = shapley_tables(m)
        M = 1 << m
        users = np.flatnonzero(m_u == m)
        N = int(exp.n_touch[users].max())
        B = max(1, chunk_cells // (M * N))
        for s in range(0, len(users), B):
            uu = users[s : s + B]
            ctx = Ctx(
                bits=bits,
                L=L[uu, :N],
                G=G[uu, :N],
                valid=valid[uu, :N],
                n_touch=exp.n_touch[uu],
                glob=order[uu, :m],
                cnt=cnt_local[uu, :m],
            )
            P, h = prob_all_subsets(mechanism, ctx, base[uu])
            phi = shapley_from_P(P, m)
            phi_g[uu[:, None], order[uu, :m]] = phi
            P_all[uu] = P[:, -1]
            P_none[uu] = P[:, 0]
            if h is not None:
                h_all[uu, :N] = h
    # realised conversions
    conv_us = np.full(U, -1, np.int64)
    t_us = np.zeros(G.shape, np.int64)
    t_us[valid] = np.round(exp.t_days * US_PER_DAY).astype(np.int64)
    last_us = t_us[np.arange(U), exp.n_touch - 1]
    if p["kind"] == "end":
        conv = rng.random(U) < P_all
        delay = rng.uniform(0.5, 1.5, U)
        conv_us = np.where(conv, last_us + np.round(delay * US_PER_DAY).astype(np.int64), -1)
    else:
        Uj = rng.random(G.shape)
        hit = (Uj < h_all) & valid
        conv = hit.any(axis=1)
        jd = np.argmax(hit, axis=1)
        tj = t_us[np.arange(U), jd]
        nxt_idx = np.minimum(jd + 1, G.shape[1] - 1)
        has_next = (jd + 1) < exp.n_touch
        gap = np.where(has_next, t_us[np.arange(U), nxt_idx] - tj, 6 * 3_600_000_000)
        delay = np.minimum(rng.exponential(20 * 60_000_000, U), gap / 2).astype(np.int64)
        conv_us = np.where(conv, tj + delay, -1)
    start_us = int(START.timestamp() * 1_000_000)
    anon = np.array([f"u_{i:07d}" for i in range(U)], dtype=object)
    T = int(valid.sum())
    uid_flat = np.repeat(np.arange(U), exp.n_touch)
    tp = pl.DataFrame(
        {
            "touchpoint_id": [f"tp_{i:09d}" for i in range(T)],
            "anon_id": anon[uid_flat],
            "occurred_at": pl.Series(start_us + t_us[valid], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "channel": np.array(CHANNELS, dtype=object)[G[valid]],
        }
    )
    cu = np.flatnonzero(conv)
    values = np.maximum(1, np.round(np.exp(rng.normal(math.log(50.0), 0.8, len(cu))) * 100)).astype(np.int64) * 10_000
    cv = pl.DataFrame(
        {
            "conversion_id": [f"cv_{i:09d}" for i in range(len(cu))],
            "anon_id": anon[cu],
            "occurred_at": pl.Series(start_us + conv_us[cu], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "value_micros": pl.Series(values, dtype=pl.Int64),
        }
    )
    contrib = phi_g.sum(axis=0)
    total = contrib.sum()
    touches = np.bincount(exp.channel, minlength=C)
    reach = np.bincount(order[cnt_local > 0], minlength=C)
    truth = pl.DataFrame(
        {
            "channel": list(CHANNELS),
            "true_contribution": contrib,
            "true_share": contrib / total if total != 0 else np.full(C, np.nan),
            "touches": touches,
            "reach": reach,
        }
    )
    users = pl.DataFrame(
        {
            "anon_id": anon,
            "intent": exp.intent,
            "n_touches": exp.n_touch,
            "distinct": m_u,
            "p_convert": P_all,
            "p_baseline": P_none,
            "converted": conv,
        }
    )
    return World(
        mechanism,
        seed,
        tp,
        cv,
        truth,
        users,
        float(P_all.sum()),
        float(P_none.sum()),
        {k: v for k, v in p.items()},
        time.perf_counter() - t0,
        phi_g if keep_user_values else None,
        exp,
    )


if __name__ == "__main__":
    for name in MECHANISMS:
        w = generate(name, 50_000, 0)
        print(
            f"{name:24s} {w.seconds:6.1f}s tps={w.touchpoints.height} conv={w.conversions.height} "
            f"exp={w.expected_conversions:.0f} base={w.baseline_conversions:.0f} "
            f"rate={w.conversions.height / 50_000:.3f} base_rate={w.baseline_conversions / 50_000:.3f}"
        )
        print(w.truth.select("channel", pl.col("true_share").round(3)).transpose(column_names="channel"))
