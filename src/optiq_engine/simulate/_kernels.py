"""Numba kernels of the independent simulator (``optiq_engine.simulate.worlds``; docs/worlds.md).

Pure functions: integer-encoded, user-sorted arrays in CSR form in, fresh arrays out. A user ``u`` owns the
touches ``offsets[u]:offsets[u+1]`` (time order, strictly increasing ``ts``); ``channel`` holds channel codes
``0..C-1``. The response of a user to the exposures of a set ``S`` of channels is one of four *kinds*:

- ``END_COUNTS``: one decision after the journey, ``σ(base + Σ_c β_c g(n_c) - κ_c n_c² + pair terms +
  threshold term)`` where ``n_c`` counts the touches of ``c ∈ S``;
- ``END_DECAY``: one decision at time ``decision``, ``σ(base + Σ_{j: c_j ∈ S} β_{c_j} 2^(-(decision - t_j) / h_{c_j}))``;
- ``TOUCH_STOCK``: a decision at every touch, hazard ``σ(base + Σ_c β_c F(K_c(j)))`` with
  ``F(k) = 1 + ρ + … + ρ^(k-1)`` and ``K_c(j)`` the touches of ``c ∈ S`` up to and including ``j``;
- ``TOUCH_DECAY``: a decision at every touch, hazard ``σ(base + Σ_{i ≤ j: c_i ∈ S} β_{c_i} 2^(-(t_j - t_i) / h_{c_i}))``.

A user converts at most once: for the per-touch kinds ``P(convert) = 1 - Π_j (1 - p_j)`` over every touch
(touches of channels outside ``S`` stay decision points with no effect).
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels._jit import jit, jit_inline, pjit, prange

END_COUNTS = 0
END_DECAY = 1
TOUCH_STOCK = 2
TOUCH_DECAY = 3

LINEAR = 0  # g(n) = n
LOG2 = 1  # g(n) = log2(1 + n)

PAIR_TOGETHER = 0  # both channels touched
PAIR_AFTER = 1  # a touch of the second channel after a touch of the first

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
MAX_CHANNELS = 16


@jit
def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit
def _end_counts(
    base,
    beta,
    quad,
    transform,
    channel,
    ts,
    lo,
    hi,
    in_s,
    pair_a,
    pair_b,
    pair_beta,
    pair_type,
    thr_in,
    thr_k,
    thr_beta,
):
    n_channels = beta.shape[0]
    counts = np.zeros(n_channels, np.int64)
    first = np.full(n_channels, _INT64_MAX, np.int64)
    last = np.full(n_channels, _INT64_MIN, np.int64)
    for j in range(lo, hi):
        c = channel[j]
        if in_s[c]:
            counts[c] += 1
            if ts[j] < first[c]:
                first[c] = ts[j]
            if ts[j] > last[c]:
                last[c] = ts[j]
    x = base
    total = 0
    for c in range(n_channels):
        n = counts[c]
        if n > 0:
            g = float(n) if transform == LINEAR else math.log2(1.0 + n)
            x += beta[c] * g - quad[c] * n * n
            if thr_in[c]:
                total += n
    for p in range(pair_a.shape[0]):
        a = pair_a[p]
        b = pair_b[p]
        if counts[a] > 0 and counts[b] > 0 and (pair_type[p] == PAIR_TOGETHER or last[b] > first[a]):
            x += pair_beta[p]
    if thr_beta != 0.0 and total >= thr_k:
        x += thr_beta
    return _sigmoid(x)


@jit
def _end_decay(base, beta, half_life_us, channel, ts, lo, hi, in_s, decision):
    x = base
    for j in range(lo, hi):
        c = channel[j]
        if in_s[c]:
            x += beta[c] * 2.0 ** (-float(decision - ts[j]) / half_life_us[c])
    return _sigmoid(x)


@jit
def _touch_hazards(kind, base, beta, rho, half_life_us, channel, ts, lo, hi, in_s, out):
    """Fill ``out[0:hi-lo]`` with the per-touch conversion probabilities ``p_j`` of one user."""
    n_channels = beta.shape[0]
    if kind == TOUCH_STOCK:
        x = base
        counts = np.zeros(n_channels, np.int64)
        for j in range(lo, hi):
            c = channel[j]
            if in_s[c]:
                x += beta[c] * rho ** counts[c]
                counts[c] += 1
            out[j - lo] = _sigmoid(x)
    else:  # TOUCH_DECAY: per-channel stock, decayed to the time of its last update
        stock = np.zeros(n_channels)
        at = np.zeros(n_channels, np.int64)
        for j in range(lo, hi):
            c = channel[j]
            t = ts[j]
            if in_s[c]:
                stock[c] = stock[c] * 2.0 ** (-float(t - at[c]) / half_life_us[c]) + beta[c]
                at[c] = t
            x = base
            for k in range(n_channels):
                if stock[k] != 0.0:
                    x += stock[k] * 2.0 ** (-float(t - at[k]) / half_life_us[k])
            out[j - lo] = _sigmoid(x)


@jit
def _probability(
    kind,
    base,
    beta,
    quad,
    transform,
    rho,
    half_life_us,
    channel,
    ts,
    lo,
    hi,
    in_s,
    decision,
    pair_a,
    pair_b,
    pair_beta,
    pair_type,
    thr_in,
    thr_k,
    thr_beta,
    hazards,
):
    """P(the user converts | exposures restricted to ``in_s``)."""
    if kind == END_COUNTS:
        return _end_counts(
            base,
            beta,
            quad,
            transform,
            channel,
            ts,
            lo,
            hi,
            in_s,
            pair_a,
            pair_b,
            pair_beta,
            pair_type,
            thr_in,
            thr_k,
            thr_beta,
        )
    if kind == END_DECAY:
        return _end_decay(base, beta, half_life_us, channel, ts, lo, hi, in_s, decision)
    _touch_hazards(kind, base, beta, rho, half_life_us, channel, ts, lo, hi, in_s, hazards)
    log_q = 0.0
    for j in range(hi - lo):
        log_q += math.log1p(-hazards[j])
    return -math.expm1(log_q)


@jit
def _shapley_weights(max_m):
    """``w[m, s] = s! (m - s - 1)! / m!`` for ``1 <= m <= max_m`` and ``0 <= s < m``."""
    w = np.zeros((max_m + 1, max_m + 1))
    for m in range(1, max_m + 1):
        for s in range(m):
            w[m, s] = math.exp(math.lgamma(s + 1.0) + math.lgamma(m - s + 0.0) - math.lgamma(m + 1.0))
    return w


@pjit
def user_values(
    offsets,
    channel,
    ts,
    kind,
    base,
    segment,
    decision,
    beta,
    quad,
    transform,
    rho,
    half_life_us,
    pair_a,
    pair_b,
    pair_beta,
    pair_type,
    thr_in,
    thr_k,
    thr_beta,
):
    """Exact per-user Shapley values of the game ``v(S) = P(convert | S) - P(convert | ∅)``, and holdout effects.

    Parameters
    ----------
    offsets : int64[n_users + 1]
        CSR offsets of the users' touches.
    channel : int64[n_touches]
        Channel codes ``0..C-1``, user-sorted then time-sorted.
    ts : int64[n_touches]
        Touch times (µs), strictly increasing within a user.
    kind, segment : int64[n_segments], int64[n_users]
        The response kind of each segment and each user's segment.
    base : float64[n_users]
        The user's baseline log-odds (segment intercept plus intent loading).
    decision : int64[n_users]
        Decision time of the journey-end kinds (µs).
    beta, quad : float64[n_segments, C]
        Per-segment channel effects and quadratic penalties (END_COUNTS).
    transform, rho, half_life_us : int, float, float64[C]
        Count transform (END_COUNTS), saturation ratio (TOUCH_STOCK), half-lives in µs (decay kinds).
    pair_a, pair_b, pair_beta, pair_type : arrays of length P
        Interaction / order terms (END_COUNTS).
    thr_in, thr_k, thr_beta : bool[C], int, float
        Threshold term (END_COUNTS): ``thr_beta`` once ``Σ_{c ∈ thr_in} n_c >= thr_k``.

    Returns
    -------
    phi : float64[n_users, C]
        Shapley value of each channel for each user (0 for channels the user did not touch).
    p_all, p_none : float64[n_users]
        ``P(convert)`` with all exposures and with none.
    holdout : float64[n_users, C]
        Holdout effect of each channel for each user: ``P(convert | D) - P(convert | D \\ {c})``, ``D`` the
        user's channels (0 for channels the user did not touch).

    Notes
    -----
    Enumerates the ``2^m`` subsets of the user's ``m`` distinct channels (``m <= C <= 16``); each user writes
    only its own rows, so the result does not depend on the number of threads. The holdout effects are read
    off the same table of ``P(convert | S)`` (the ``m`` sets with one channel removed), so they cost nothing.
    """
    n_users = offsets.shape[0] - 1
    n_channels = beta.shape[1]
    phi = np.zeros((n_users, n_channels))
    p_all = np.zeros(n_users)
    p_none = np.zeros(n_users)
    holdout = np.zeros((n_users, n_channels))
    weights = _shapley_weights(n_channels)
    for u in prange(n_users):
        lo = offsets[u]
        hi = offsets[u + 1]
        g = segment[u]
        k = kind[g]
        brow = beta[g]
        qrow = quad[g]
        seen = np.zeros(n_channels, np.bool_)
        local = np.empty(n_channels, np.int64)
        m = _distinct_channels(channel, lo, hi, seen, local)
        hazards = np.empty(hi - lo)
        in_s = np.zeros(n_channels, np.bool_)
        n_sets = 1 << m
        v = np.empty(n_sets)
        for mask in range(n_sets):
            for b in range(m):
                in_s[local[b]] = (mask >> b) & 1 == 1
            # the arrays of a Numba call packed (fmt: skip): one per line would double the function
            v[mask] = _probability(
                k, base[u], brow, qrow, transform, rho, half_life_us, channel, ts, lo, hi, in_s, decision[u],
                pair_a, pair_b, pair_beta, pair_type, thr_in, thr_k, thr_beta, hazards,
            )  # fmt: skip
        p_none[u] = v[0]
        p_all[u] = v[n_sets - 1]
        _shapley_values(v, m, local, weights, phi, u)
        for i in range(m):
            holdout[u, local[i]] = v[n_sets - 1] - v[(n_sets - 1) ^ (1 << i)]
    return phi, p_all, p_none, holdout


@jit_inline
def _distinct_channels(channel, lo, hi, seen, local):
    """Write the distinct channels of touches ``lo:hi`` to ``local``, in order of first touch; returns how many.

    ``seen`` (bool[C], all False) marks the channels met so far.
    """
    m = 0
    for j in range(lo, hi):
        c = channel[j]
        if not seen[c]:
            seen[c] = True
            local[m] = c
            m += 1
    return m


@jit_inline
def _shapley_values(v, m, local, weights, phi, u):
    """Write to ``phi[u, local[i]]`` the Shapley value of player ``i`` of the ``m``-player game ``v``.

    ``v`` is indexed by bit mask (bit ``b``: player ``b``, i.e. channel ``local[b]``); the value is
    ``Σ_{S ∌ i} w[m, |S|] (v(S ∪ i) - v(S))``, the subsets in increasing mask order.
    """
    n_sets = 1 << m
    for i in range(m):
        bit = 1 << i
        total = 0.0
        for mask in range(n_sets):
            if mask & bit == 0:
                s = 0
                rest = mask
                while rest:
                    rest &= rest - 1
                    s += 1
                total += weights[m, s] * (v[mask | bit] - v[mask])
        phi[u, local[i]] = total


@jit
def decide(
    offsets,
    channel,
    ts,
    kind,
    base,
    segment,
    decision,
    beta,
    quad,
    transform,
    rho,
    half_life_us,
    pair_a,
    pair_b,
    pair_beta,
    pair_type,
    thr_in,
    thr_k,
    thr_beta,
    u_user,
    u_touch,
):
    """Draw each user's conversion with all exposures: ``-1`` (none), else the index of the deciding touch.

    Journey-end kinds convert iff ``u_user[u] < P(convert)``; the returned index is then the user's last
    touch. Per-touch kinds convert at the first touch ``j`` with ``u_touch[j] < p_j`` (later touches are
    not decision points any more: at most one conversion per user).
    """
    n_users = offsets.shape[0] - 1
    n_channels = beta.shape[1]
    out = np.full(n_users, -1, np.int64)
    in_s = np.ones(n_channels, np.bool_)
    for u in range(n_users):
        lo = offsets[u]
        hi = offsets[u + 1]
        g = segment[u]
        k = kind[g]
        hazards = np.empty(hi - lo)
        if k in (END_COUNTS, END_DECAY):
            # the arrays of a Numba call packed (fmt: skip): one per line would double the function
            p = _probability(
                k, base[u], beta[g], quad[g], transform, rho, half_life_us, channel, ts, lo, hi, in_s, decision[u],
                pair_a, pair_b, pair_beta, pair_type, thr_in, thr_k, thr_beta, hazards,
            )  # fmt: skip
            if u_user[u] < p:
                out[u] = hi - 1
        else:
            _touch_hazards(k, base[u], beta[g], rho, half_life_us, channel, ts, lo, hi, in_s, hazards)
            for j in range(lo, hi):
                if u_touch[j] < hazards[j - lo]:
                    out[u] = j
                    break
    return out
