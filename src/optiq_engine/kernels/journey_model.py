"""The whole-journey model of DATA_DRIVEN's automatic form (docs/data_driven.md §6).

After touch ``j`` of a path (positions 1..m), with the decayed, saturating exposure stock
``x_{j,c} = Σ_{i ≤ j, c_i = c} (Π_{i < l ≤ j} δ_l) s^(k_i - 1)`` (``k_i``: the ordinal of touch ``i`` among the
touches of ``c``; ``δ_l`` the decay of ``c``'s stock at touch ``l``, from the ``decay`` arrays: ``ρ`` per touch,
times ``2^(-gap_l / half-life_c)`` on timed paths; δ = s = 1: touch counts), the journey

- converts *at the touch* with the hazard ``h_j = σ(b_h + β_h · x_j)`` (when the touch part is on);
- otherwise ends after it with ``E_j = σ(g[bucket(j)] + γ[c_j] + γ'[c_{j-1}])`` (the exposure process: the
  position and the last two channels seen, ``γ'`` from the second touch on), and a journey
  that ends decides once, converting with ``q = σ(b_p + β_p · x_m)`` (when the end part is on);
- otherwise continues to touch ``j + 1``.

A converting path contributes ``log(h_m + (1 - h_m) E_m q)`` at its last touch, a non-converting one
``log((1 - h_m) E_m (1 - q))``, every earlier touch ``log((1 - h_j)(1 - E_j))``. Touch part only: the
discrete-time hazard model; end part only: the journey-end logistic model; both: the nested model.

Parameters are one vector ``[b_h, β_h (C), b_p, β_p (C), g (B), γ (C), γ' (C)]`` whatever the form; the form's flags say
which blocks are used (the others are ignored and get zero gradient). This module: the stocks, the Shapley
values, predictions and lifts per path; the likelihood, summed over the paths' distinct prefixes, is in
:mod:`~optiq_engine.kernels.journey_steps`.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .logistic import EXACT_MAX_CHANNELS, _sigmoid, add_subset_shapley
from .paths import mix64
from .splitmix import shuffle
from .threads import row_chunks, run_parallel

__all__ = [
    "N_BUCKETS",
    "N_POSITIONS",
    "N_STAGES",
    "bucket",
    "end_stocks",
    "nested_shapley",
    "nested_predict",
    "nested_lift",
    "pair_scores",
    "stock_moments",
    "term_holds",
]

#: Position buckets of the ending process: 1, 2, 3, 4, 5, 6, 7-8, 9-12, 13-20, 21+.
N_POSITIONS = 10
#: Funnel stages of the ending process (docs/data_driven.md §6.1, "The funnel"): early, middle, late.
N_STAGES = 3
#: The ending's ``g`` block: a logit per position bucket, then per later funnel stage one per position bucket.
N_BUCKETS = N_POSITIONS * N_STAGES

_CHUNKS = 64  # fixed, so that sums do not depend on the number of threads


@jit
def bucket(position):
    """Bucket of a 1-based touch position."""
    if position <= 6:
        return position - 1
    if position <= 8:
        return 6
    if position <= 12:
        return 7
    if position <= 20:
        return 8
    return 9


@jit
def n_codes_of(n_params):
    """Channels of a parameter vector ``[b_h, β_h (C), b_p, β_p (C), g (N_BUCKETS), γ (C), γ' (C)]``."""
    return (n_params - 2 - N_BUCKETS) // 4


@jit
def _ending_logit(params, gg, n_codes, cell, c, prev):
    """``u = g[position bucket] + g[cell] + γ[c] + γ'[prev]``: the logit of ending after a touch of ``c``
    in the ending ``cell`` (``bucket(position) + N_POSITIONS * stage``; the funnel stage 0 without a term),
    ``prev`` the channel of the touch before (-1: none, no ``γ'`` term); ``gg``: the first ending parameter."""
    u = params[gg + cell % N_POSITIONS] + params[gg + N_BUCKETS + c]
    if cell >= N_POSITIONS:  # a later funnel stage: its own term at each position bucket
        u += params[gg + cell]
    if prev >= 0:
        u += params[gg + N_BUCKETS + n_codes + prev]
    return u


@jit
def _effects_of(params, base, chan, stock, d):
    """``Σ_q params[base + chan_q] stock_q``."""
    z = 0.0
    for q in range(d):
        z += params[base + chan[q]] * stock[q]
    return z


@jit
def _path_players(offsets, codes, p, n_codes, decay, sat, local, chan, xmat, seen):
    """Fill ``xmat[j, q]`` (stock of the path's q-th distinct channel at its touch j) and ``seen[j]`` (the
    distinct channels of touches 0..j); returns d."""
    a, e = offsets[p], offsets[p + 1]
    d = 0
    for j in range(a, e):
        c = codes[j]
        if local[c] < 0:
            local[c] = d
            chan[d] = c
            d += 1
    inc = np.ones(max(d, 1), dtype=np.float64)
    for q in range(d):
        xmat[0, q] = 0.0
    for j in range(a, e):
        t = j - a
        for q in range(d):
            xmat[t, q] = xmat[t - 1, q] * decay[1][decay[0][j], chan[q]] if t > 0 else 0.0
        q = local[codes[j]]
        xmat[t, q] += inc[q]
        inc[q] *= sat
        seen[t] = max(seen[t - 1] if t > 0 else 0, q + 1)
    for q in range(d):
        local[chan[q]] = -1
    return d


@jit
def _base_logits(params, held, n_codes, chan, xmat, m, zbase):
    """The logits every coalition shares: intercepts plus the ``held`` effects, per touch into ``zbase`` (touch
    part); returns the end part's."""
    for t in range(m):
        z = params[0]
        for q in range(chan.shape[0]):
            z += held[1 + chan[q]] * xmat[t, q]
        zbase[t] = z
    w = params[1 + n_codes]
    for q in range(chan.shape[0]):
        w += held[2 + n_codes + chan[q]] * xmat[m - 1, q]
    return w


@jit
def _p_convert(params, zbase, wbase, n_codes, chan, xmat, m, mask, use_h, use_p, pq, n_pq):
    """P(convert | the path, with the effects of the players in ``mask`` only) from the shared logits
    (:func:`_base_logits`); the pair effects ``pq[:n_pq]`` (:func:`_path_pairs`) where both players are in
    ``mask``."""
    survive = 1.0
    if use_h:
        for t in range(m):
            z = zbase[t]
            for q in range(chan.shape[0]):
                if (mask >> q) & 1:
                    z += params[1 + chan[q]] * xmat[t, q]
            survive *= 1.0 - _sigmoid(z)
    if use_p:
        w = wbase
        for q in range(chan.shape[0]):
            if (mask >> q) & 1:
                w += params[2 + n_codes + chan[q]] * xmat[m - 1, q]
        for i in range(n_pq):
            both = (1 << pq[i, 0]) | (1 << pq[i, 1])
            if mask & both == both:
                w += params[pq[i, 2]]
        survive *= 1.0 - _sigmoid(w)
    return 1.0 - survive


@jit
def _coalition_values(params, zbase, wbase, n_codes, chan, xmat, seen, m, d, use_h, use_p, pq, n_pq, v, ez, g):
    """``v[S] = P(convert | S) - P(convert | none)`` for every coalition ``S`` (bit ``q``: the path's q-th
    distinct channel) at once, as :func:`_p_convert` would give each. A touch's logit depends only on the
    players seen by then (``seen``: they come in first-touch order), so each touch's ``2^seen`` factors
    ``1 - σ(z)`` are built one player at a time (:func:`_survival_factors`), and the factors of the touches
    that saw the same players are multiplied together before they are spread over the ``2^d`` coalitions."""
    n_sub = 1 << d
    for s in range(n_sub):
        v[s] = 1.0
    if use_h:
        t = 0
        while t < m:
            k = seen[t]
            n_k = 1 << k
            for s in range(n_k):
                g[s] = 1.0
            while t < m and seen[t] == k:
                _survival_factors(zbase[t], params, 1, chan, xmat[t], k, pq, 0, ez)
                for s in range(n_k):
                    g[s] *= ez[s]
                t += 1
            for s in range(n_sub):
                v[s] *= g[s & (n_k - 1)]
    if use_p:
        _survival_factors(wbase, params, 2 + n_codes, chan, xmat[m - 1], d, pq, n_pq, ez)
        for s in range(n_sub):
            v[s] *= ez[s]
    none = v[0]
    for s in range(n_sub):
        v[s] = none - v[s]


@jit
def _survival_factors(base, params, first, chan, x, k, pq, n_pq, out):
    """``out[S] = 1 - σ(base + Σ_{q ∈ S} params[first + chan_q] x_q + Σ_{pairs ⊆ S} θ) = 1 / (1 + e^z)`` for
    the ``2^k`` coalitions of the first ``k`` players (``pq[:n_pq]``: the pair effects, :func:`_path_pairs`):
    ``e^z`` built as a product, one exponential per player and pair (each coalition's own exponential where a
    product could over- or underflow)."""
    out[0] = math.exp(base)
    fine = 1e-25 < out[0] < 1e25
    for q in range(k):
        f = math.exp(params[first + chan[q]] * x[q])
        fine = fine and 1e-25 < f < 1e25
        half = 1 << q
        for s in range(half):
            out[half + s] = out[s] * f
    for i in range(n_pq):
        f = math.exp(params[pq[i, 2]])
        fine = fine and 1e-25 < f < 1e25
        both = (1 << pq[i, 0]) | (1 << pq[i, 1])
        for s in range(1 << k):
            if s & both == both:
                out[s] *= f
    if fine and k + n_pq <= 11:  # at most 12 factors within 1e±25 each: no product leaves the doubles' range
        for s in range(1 << k):
            out[s] = 1.0 / (1.0 + out[s])
        return
    for s in range(1 << k):
        z = base
        for q in range(k):
            if (s >> q) & 1:
                z += params[first + chan[q]] * x[q]
        for i in range(n_pq):
            both = (1 << pq[i, 0]) | (1 << pq[i, 1])
            if s & both == both:
                z += params[pq[i, 2]]
        out[s] = _sigmoid(-z)


@jit
def _pair_flags(pairs, codes, a, e, seen, on):
    """``on[i]``: whether term ``i`` of ``pairs`` (kernel layout ``(a, b, slot, kind)``) holds in the path
    ``codes[a:e]``: kind 0 ("a with b"), both channels touched; kind 1 ("a then b"), some touch of ``a`` before
    some touch of ``b``; kind 2 ("a first", ``b = a``), the path's first touch is ``a``. ``seen``: a zeroed
    bool per channel code, left zeroed."""
    for i in range(pairs.shape[0]):
        kind = pairs[i, 3]
        on[i] = kind == 2 and codes[a] == pairs[i, 0]
    for j in range(a, e):
        c = codes[j]
        for i in range(pairs.shape[0]):
            if pairs[i, 3] == 1 and c == pairs[i, 1] and seen[pairs[i, 0]]:
                on[i] = True
        seen[c] = True
    for i in range(pairs.shape[0]):
        if pairs[i, 3] == 0:
            on[i] = seen[pairs[i, 0]] and seen[pairs[i, 1]]
    for j in range(a, e):
        seen[codes[j]] = False


@jit
def _path_pairs(pairs, on, chan, d, pq):
    """The pair effects of one path (docs/data_driven.md §6.1, "Pairs"): for each pair of ``pairs`` that holds
    in it (``on``, :func:`_pair_flags`), a row ``(q_a, q_b, slot)`` of ``pq`` (its channels' player indices
    among ``chan[:d]`` and the effect's parameter index); returns their number."""
    n = 0
    for i in range(pairs.shape[0]):
        if not on[i]:
            continue
        qa, qb = -1, -1
        for q in range(d):
            if chan[q] == pairs[i, 0]:
                qa = q
            if chan[q] == pairs[i, 1]:  # the same player for a term of one channel
                qb = q
        pq[n, 0], pq[n, 1], pq[n, 2] = qa, qb, pairs[i, 2]
        n += 1
    return n


def nested_shapley(offsets, codes, params, held, decay, sat, use_h, use_p, pairs, hashes, n_perm, seed, used):
    """Per path, the Shapley values of ``v(S) = P(convert | S's effects) - P(convert | none)``.

    ``held`` (shaped as ``params``): effects that every coalition keeps, the intent term of a calibrated fit
    (docs/data_driven.md §6.1); zeros for none. ``pairs`` (int64 ``(P, 4)``): the end part's pair effects,
    channels ``a``, ``b``, the parameter index of their effect and its kind (0: both touched, 1: some touch of
    ``a`` before some of ``b``), in a coalition's logit when both channels are in it and the pair holds.
    ``used``: per path, whether it is computed (the others get zeros).

    Players are the path's distinct channels in first-occurrence order (aligned with
    :func:`~optiq_engine.kernels.logistic.count_features`). Exact up to ``EXACT_MAX_CHANNELS`` players,
    else ``n_perm`` random orderings keyed by ``(seed, path hash)``. Returns ``phi`` and the number of
    sampled paths. The paths are computed in chunks on :func:`~.threads.thread_count` threads.
    """
    n_codes = n_codes_of(params.shape[0])
    d_of, m_max, weights = _shapley_layout(offsets, codes, n_codes)
    p_rows = offsets.shape[0] - 1
    phi = np.zeros(d_of[p_rows], dtype=np.float64)
    sampled = np.zeros(p_rows, dtype=np.int64)
    model = (
        offsets,
        codes,
        params,
        held,
        decay,
        sat,
        use_h,
        use_p,
        pairs,
        hashes,
        n_perm,
        seed,
        used,
        d_of,
        m_max,
        weights,
    )
    run_parallel(_shapley_rows, [(*model, a, b, phi, sampled) for a, b in row_chunks(p_rows, _CHUNKS)])
    return phi, int(sampled.sum())


@jit
def _shapley_layout(offsets, codes, n_codes):
    """Per path the start of its players in the output (``d_of``), the longest path, and the Shapley
    weights ``s! (d - s - 1)! / d!`` per number of players ``d`` and coalition size ``s``."""
    p_rows = offsets.shape[0] - 1
    d_of = np.zeros(p_rows + 1, dtype=np.int64)
    seen = np.zeros(max(n_codes, 1), dtype=np.bool_)
    m_max = 1
    for p in range(p_rows):
        d = 0
        for j in range(offsets[p], offsets[p + 1]):
            if not seen[codes[j]]:
                seen[codes[j]] = True
                d += 1
        for j in range(offsets[p], offsets[p + 1]):
            seen[codes[j]] = False
        d_of[p + 1] = d_of[p] + d
        m_max = max(m_max, offsets[p + 1] - offsets[p])
    d_max = 0
    for p in range(p_rows):
        d_max = max(d_max, min(d_of[p + 1] - d_of[p], EXACT_MAX_CHANNELS))
    weights = np.zeros((d_max + 1, max(d_max, 1)), dtype=np.float64)
    for d in range(1, d_max + 1):
        for s in range(d):
            weights[d, s] = math.exp(math.lgamma(s + 1) + math.lgamma(d - s) - math.lgamma(d + 1))
    return d_of, m_max, weights


@jit
def _shapley_rows(
    offsets,
    codes,
    params,
    held,
    decay,
    sat,
    use_h,
    use_p,
    pairs,
    hashes,
    n_perm,
    seed,
    used,
    d_of,
    m_max,
    weights,
    p_lo,
    p_hi,
    phi,
    sampled,
):
    """:func:`nested_shapley` of the paths ``p_lo:p_hi``, into ``phi`` and ``sampled``."""
    n_codes = n_codes_of(params.shape[0])
    d_max = weights.shape[0] - 1
    local = np.full(max(n_codes, 1), -1, dtype=np.int64)
    chan_buf = np.empty(max(n_codes, 1), dtype=np.int64)
    xmat = np.empty((m_max, max(n_codes, 1)), dtype=np.float64)
    zbase = np.empty(m_max, dtype=np.float64)
    seen = np.empty(m_max, dtype=np.int64)
    v = np.empty(1 << d_max, dtype=np.float64)
    zs = np.empty(1 << d_max, dtype=np.float64)
    g = np.empty(1 << d_max, dtype=np.float64)
    pq = np.empty((max(pairs.shape[0], 1), 3), dtype=np.int64)
    on = np.zeros(max(pairs.shape[0], 1), dtype=np.bool_)
    touched = np.zeros(max(n_codes, 1), dtype=np.bool_)
    for p in range(p_lo, p_hi):
        m = offsets[p + 1] - offsets[p]
        if m == 0 or not used[p]:
            continue
        d = _path_players(offsets, codes, p, n_codes, decay, sat, local, chan_buf, xmat, seen)
        chan = chan_buf[:d].copy()
        n_pq = 0
        if use_p and pairs.shape[0]:
            _pair_flags(pairs, codes, offsets[p], offsets[p + 1], touched, on)
            n_pq = _path_pairs(pairs, on, chan, d, pq)
        out = phi[d_of[p] : d_of[p + 1]]
        wbase = _base_logits(params, held, n_codes, chan, xmat, m, zbase)
        if d <= EXACT_MAX_CHANNELS:
            _coalition_values(params, zbase, wbase, n_codes, chan, xmat, seen, m, d, use_h, use_p, pq, n_pq, v, zs, g)
            add_subset_shapley(v, d, weights[d], out)
        else:
            sampled[p] = 1
            base = _p_convert(params, zbase, wbase, n_codes, chan, xmat, m, 0, use_h, use_p, pq, n_pq)
            order = np.arange(d)
            key = mix64(np.uint64(seed) ^ hashes[p])
            draws = 0
            for _ in range(n_perm):
                draws = shuffle(order, d, key, draws)
                mask = 0
                prev = 0.0
                for t in range(d):
                    mask |= 1 << order[t]
                    cur = _p_convert(params, zbase, wbase, n_codes, chan, xmat, m, mask, use_h, use_p, pq, n_pq) - base
                    out[order[t]] += cur - prev
                    prev = cur
            for q in range(d):
                out[q] /= n_perm


def nested_predict(offsets, codes, params, held, decay, sat, use_h, use_p, pairs, drop_code):
    """P(convert | path) of every path row; the effect of channel ``drop_code`` removed (-1: none; its pair
    effects too), the ``held`` effects kept (``pairs``: as :func:`nested_shapley`). The paths are computed in
    chunks on threads."""
    p_rows = offsets.shape[0] - 1
    out = np.zeros(p_rows, dtype=np.float64)
    m_max = int(np.diff(offsets).max(initial=1))
    model = (offsets, codes, params, held, decay, sat, use_h, use_p, pairs, drop_code, max(m_max, 1))
    run_parallel(_predict_rows, [(*model, a, b, out) for a, b in row_chunks(p_rows, _CHUNKS)])
    return out


@jit
def _predict_rows(offsets, codes, params, held, decay, sat, use_h, use_p, pairs, drop_code, m_max, p_lo, p_hi, out):
    """:func:`nested_predict` of the paths ``p_lo:p_hi``, into ``out``."""
    n_codes = n_codes_of(params.shape[0])
    local = np.full(max(n_codes, 1), -1, dtype=np.int64)
    chan_buf = np.empty(max(n_codes, 1), dtype=np.int64)
    xmat = np.empty((m_max, max(n_codes, 1)), dtype=np.float64)
    zbase = np.empty(m_max, dtype=np.float64)
    seen = np.empty(m_max, dtype=np.int64)
    pq = np.empty((max(pairs.shape[0], 1), 3), dtype=np.int64)
    on = np.zeros(max(pairs.shape[0], 1), dtype=np.bool_)
    touched = np.zeros(max(n_codes, 1), dtype=np.bool_)
    for p in range(p_lo, p_hi):
        m = offsets[p + 1] - offsets[p]
        if m == 0:
            continue
        d = _path_players(offsets, codes, p, n_codes, decay, sat, local, chan_buf, xmat, seen)
        mask = 0
        for q in range(d):
            if chan_buf[q] != drop_code:
                mask |= 1 << q
        chan = chan_buf[:d]
        n_pq = 0
        if use_p and pairs.shape[0]:
            _pair_flags(pairs, codes, offsets[p], offsets[p + 1], touched, on)
            n_pq = _path_pairs(pairs, on, chan, d, pq)
        wbase = _base_logits(params, held, n_codes, chan, xmat, m, zbase)
        out[p] = _p_convert(params, zbase, wbase, n_codes, chan, xmat, m, mask, use_h, use_p, pq, n_pq)


@jit
def nested_lift(params, held, offsets, codes, weights, decay, sat, use_h, use_p, pairs, code):
    """``L = Σ_p weights[p] (P(convert | path) - P(convert | path without code's effect))``, ``dL/dparams``
    and ``dL/dheld`` (``pairs``: as :func:`nested_shapley`; a pair's effect is ``code``'s too).

    The holdout effect of channel ``code`` on the journeys counted by ``weights``: what a lift test of that
    channel measures. ``held`` (shaped as ``params``): effects kept in both terms (the intent term of a
    calibrated fit, docs/data_driven.md §6.1); zeros for none.
    """
    n_par = params.shape[0]
    n_codes = n_codes_of(n_par)
    grad = np.zeros(n_par, dtype=np.float64)
    grad_held = np.zeros(n_par, dtype=np.float64)
    total = 0.0
    local, chan, stock, inc = _stock_buffers(n_codes)
    m_max = 1
    for p in range(offsets.shape[0] - 1):
        m_max = max(m_max, offsets[p + 1] - offsets[p])
    zs = np.empty((2, m_max), dtype=np.float64)
    surv = np.ones(2)
    w = np.zeros(2)
    on = np.zeros(max(pairs.shape[0], 1), dtype=np.bool_)
    touched = np.zeros(max(n_codes, 1), dtype=np.bool_)
    for p in range(offsets.shape[0] - 1):
        a, e = offsets[p], offsets[p + 1]
        if weights[p] == 0.0 or e == a or not _has(codes, a, e, code):
            continue
        _pair_flags(pairs, codes, a, e, touched, on)
        # pass 1: the predictors with (v = 0) and without (v = 1) the channel's effect; survival of both
        surv[:] = 1.0
        d = 0
        for j in range(a, e):
            d = _stock_step(codes[j], decay[1][decay[0][j]], sat, local, chan, stock, inc, d)
            if use_h:
                for v in range(2):
                    z = params[0] + _effects(params, held, 1, chan, stock, d, code if v == 1 else -1)
                    zs[v, j - a] = z
                    surv[v] *= 1.0 - _sigmoid(z)
        if use_p:
            for v in range(2):
                drop = code if v == 1 else -1
                w[v] = params[1 + n_codes] + _effects(params, held, 2 + n_codes, chan, stock, d, drop)
                w[v] += _pair_effects(params, held, pairs, on, drop)
                surv[v] *= 1.0 - _sigmoid(w[v])
        total += weights[p] * (surv[1] - surv[0])
        # dP/dz_j = h_j S, dP/dw = q S; L = P(with) - P(without)
        if use_p:
            for v in range(2):
                g = (weights[p] if v == 0 else -weights[p]) * _sigmoid(w[v]) * surv[v]
                grad[1 + n_codes] += g
                _effect_grads(grad, grad_held, g, 2 + n_codes, chan, stock, d, code if v == 1 else -1)
                _pair_grads(grad, grad_held, g, pairs, on, code if v == 1 else -1)
        if use_h:  # pass 2: the stocks again, touch by touch
            for q in range(d):
                local[chan[q]] = -1
            d = 0
            for j in range(a, e):
                d = _stock_step(codes[j], decay[1][decay[0][j]], sat, local, chan, stock, inc, d)
                for v in range(2):
                    g = (weights[p] if v == 0 else -weights[p]) * _sigmoid(zs[v, j - a]) * surv[v]
                    grad[0] += g
                    _effect_grads(grad, grad_held, g, 1, chan, stock, d, code if v == 1 else -1)
        for q in range(d):
            local[chan[q]] = -1
    return total, grad, grad_held


@jit
def _has(codes, a, e, code):
    """Whether ``codes[a:e]`` holds ``code``."""
    j = a
    while j < e and codes[j] != code:
        j += 1
    return j < e


@jit
def _stock_buffers(n_codes):
    """The work arrays of :func:`_stock_step`: each channel's player slot (-1: none yet), the players'
    channels, stocks and next increments."""
    n = max(n_codes, 1)
    return np.full(n, -1, dtype=np.int64), np.empty(n, dtype=np.int64), np.zeros(n), np.ones(n)


@jit
def _stock_step(c, factor, sat, local, chan, stock, inc, d):
    """One touch of channel ``c``: every stock times its channel's ``factor`` (the touch's decays, one per
    channel), add the touch's increment; returns the players so far."""
    for q in range(d):
        stock[q] *= factor[chan[q]]
    if local[c] < 0:
        local[c] = d
        chan[d] = c
        stock[d] = 0.0
        inc[d] = 1.0
        d += 1
    stock[local[c]] += inc[local[c]]
    inc[local[c]] *= sat
    return d


@jit
def _effects(params, held, base, chan, stock, d, drop):
    """``Σ_q (held + params)[base + chan_q] stock_q``, ``params``' effect of channel ``drop`` left out."""
    z = 0.0
    for q in range(d):
        s = base + chan[q]
        z += (held[s] if chan[q] == drop else held[s] + params[s]) * stock[q]
    return z


@jit
def _effect_grads(grad, grad_held, g, base, chan, stock, d, drop):
    """Adds ``g · stock`` to the effects' gradients (``params``' only where it is in the predictor)."""
    for q in range(d):
        s = base + chan[q]
        grad_held[s] += g * stock[q]
        if chan[q] != drop:
            grad[s] += g * stock[q]


@jit
def _pair_effects(params, held, pairs, on, drop):
    """``Σ (held + params)[slot]`` over the pairs that hold in the path (``on``, :func:`_pair_flags`),
    ``params``' effect of the pairs with channel ``drop`` left out."""
    z = 0.0
    for i in range(pairs.shape[0]):
        a, b, s = pairs[i, 0], pairs[i, 1], pairs[i, 2]
        if on[i]:
            z += held[s] if drop in (a, b) else held[s] + params[s]
    return z


@jit
def _pair_grads(grad, grad_held, g, pairs, on, drop):
    """Adds ``g`` to the gradients of the pair effects in the predictor (:func:`_pair_effects`)."""
    for i in range(pairs.shape[0]):
        a, b, s = pairs[i, 0], pairs[i, 1], pairs[i, 2]
        if on[i]:
            grad_held[s] += g
            if drop != a and drop != b:
                grad[s] += g


@jit
def pair_scores(offsets, codes, resid, weight, n_codes):
    """The score and information sums of the pair screen (docs/data_driven.md §6.1, "Pairs"): ``Σ resid`` and
    ``Σ weight`` per ordered pair of channels ``(a, b)`` over the paths where both are touched (``u[0]``,
    ``i[0]``; ``a < b`` only) and where some touch of ``a`` comes before some touch of ``b`` (``u[1]``,
    ``i[1]``), and per channel ``a`` (on the diagonal) over the paths whose first touch is ``a`` (``u[2]``,
    ``i[2]``). Shapes ``(3, C, C)``."""
    n = max(n_codes, 1)
    u, i = np.zeros((3, n, n)), np.zeros((3, n, n))
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    chan = np.empty(n, dtype=np.int64)
    for p in range(offsets.shape[0] - 1):
        d = 0
        for j in range(offsets[p], offsets[p + 1]):
            c = codes[j]
            if first[c] < 0:
                first[c] = j
                chan[d] = c
                d += 1
            last[c] = j
        if d == 0:
            continue
        r, w = resid[p], weight[p]
        for x in range(d):
            a = chan[x]
            for y in range(d):
                b = chan[y]
                if a < b:
                    u[0, a, b] += r
                    i[0, a, b] += w
                if a != b and first[a] < last[b]:
                    u[1, a, b] += r
                    i[1, a, b] += w
        head = codes[offsets[p]]
        u[2, head, head] += r
        i[2, head, head] += w
        for x in range(d):
            first[chan[x]] = -1
            last[chan[x]] = -1
    return u, i


@jit
def term_holds(offsets, codes, term, n_codes):
    """Per path, whether the term ``(a, b, slot, kind)`` holds in it (:func:`_pair_flags`)."""
    terms = term.reshape(1, 4)
    out = np.zeros(offsets.shape[0] - 1, dtype=np.bool_)
    seen = np.zeros(max(n_codes, 1), dtype=np.bool_)
    on = np.zeros(1, dtype=np.bool_)
    for p in range(offsets.shape[0] - 1):
        if offsets[p + 1] > offsets[p]:
            _pair_flags(terms, codes, offsets[p], offsets[p + 1], seen, on)
            out[p] = on[0]
    return out


@jit
def stock_moments(offsets, codes, weights, n_codes, decay, sat):
    """Weighted moments of ``y = [x_m (the stock at each path's last touch, C), log m]`` over the paths:
    ``Σ w``, ``Σ w y`` and ``Σ w y yᵀ`` (the exposure factor of a calibrated fit, docs/data_driven.md §6.1)."""
    k = n_codes + 1
    s1 = np.zeros(k, dtype=np.float64)
    s2 = np.zeros((k, k), dtype=np.float64)
    y = np.zeros(k, dtype=np.float64)
    local, chan, stock, inc = _stock_buffers(n_codes)
    s0 = 0.0
    for p in range(offsets.shape[0] - 1):
        a, e = offsets[p], offsets[p + 1]
        if weights[p] == 0.0 or e == a:
            continue
        d = 0
        for j in range(a, e):
            d = _stock_step(codes[j], decay[1][decay[0][j]], sat, local, chan, stock, inc, d)
        y[:] = 0.0
        for q in range(d):
            y[chan[q]] = stock[q]
            local[chan[q]] = -1
        y[n_codes] = math.log(e - a)
        s0 += weights[p]
        for r in range(k):
            s1[r] += weights[p] * y[r]
            for c in range(k):
                s2[r, c] += weights[p] * y[r] * y[c]
    return s0, s1, s2


@jit
def end_stocks(offsets, codes, n_codes, decay, sat):
    """Per path, its distinct channels (first-occurrence order) with their stock at the path's last touch:
    :func:`~optiq_engine.kernels.logistic.count_features`' layout, the decayed, saturating stock in place of
    the count (the journey-end part's features)."""
    p_rows = offsets.shape[0] - 1
    local, chan, stock, inc = _stock_buffers(n_codes)
    feat_offsets = np.zeros(p_rows + 1, dtype=np.int64)
    feat_code = np.empty(codes.shape[0], dtype=np.int32)
    feat_value = np.empty(codes.shape[0], dtype=np.float64)
    for p in range(p_rows):
        d = 0
        for j in range(offsets[p], offsets[p + 1]):
            d = _stock_step(codes[j], decay[1][decay[0][j]], sat, local, chan, stock, inc, d)
        f = feat_offsets[p]
        for q in range(d):
            feat_code[f + q] = chan[q]
            feat_value[f + q] = stock[q]
            local[chan[q]] = -1
        feat_offsets[p + 1] = f + d
    n = feat_offsets[p_rows]
    return feat_offsets, feat_code[:n].copy(), feat_value[:n].copy()
