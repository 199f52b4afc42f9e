"""The conversion model of DATA_DRIVEN: touch-count features, logistic loss, per-path Shapley values."""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .splitmix import mix64, shuffle
from .threads import row_chunks, run_parallel, sum_in_order, thread_ranges

__all__ = ["count_features", "logistic_loss_grad", "logistic_hessian", "path_shapley", "EXACT_MAX_CHANNELS"]

#: Paths with more distinct channels than this are decomposed by permutation sampling.
EXACT_MAX_CHANNELS = 20


@jit
def count_features(offsets, codes, n_codes, rho):
    """Per path, its distinct channels (first-occurrence order) with ``f(touches)``.

    ``f(k) = k`` when ``rho <= 0``, else ``(1 - rho**k) / (1 - rho)``.

    Returns
    -------
    feat_offsets : int64[P + 1]
    feat_code : int32[F]
    feat_value : float64[F]
    """
    p_rows = offsets.shape[0] - 1
    counts = np.zeros(max(n_codes, 1), dtype=np.int64)
    feat_offsets = np.zeros(p_rows + 1, dtype=np.int64)
    for p in range(p_rows):
        d = 0
        for i in range(offsets[p], offsets[p + 1]):
            if counts[codes[i]] == 0:
                d += 1
            counts[codes[i]] += 1
        feat_offsets[p + 1] = feat_offsets[p] + d
        for i in range(offsets[p], offsets[p + 1]):
            counts[codes[i]] = 0
    feat_code = np.empty(feat_offsets[p_rows], dtype=np.int32)
    feat_value = np.empty(feat_offsets[p_rows], dtype=np.float64)
    for p in range(p_rows):
        f = feat_offsets[p]
        for i in range(offsets[p], offsets[p + 1]):
            c = codes[i]
            if counts[c] == 0:
                feat_code[f] = c
                f += 1
            counts[c] += 1
        for q in range(feat_offsets[p], feat_offsets[p + 1]):
            k = counts[feat_code[q]]
            feat_value[q] = float(k) if rho <= 0.0 else (1.0 - rho**k) / (1.0 - rho)
        for i in range(offsets[p], offsets[p + 1]):
            counts[codes[i]] = 0
    return feat_offsets, feat_code, feat_value


@jit
def _log1pexp(z):
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


@jit
def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@jit
def _row_terms(params, feat_offsets, feat_code, feat_value, p, conversions, n, grad):
    """Row ``p``'s negative log-likelihood (``n`` journeys, ``conversions`` of them converting); adds its
    gradient into ``grad``; returns ``(loss, s)``, ``s`` the row's conversion probability."""
    z = params[0]
    for q in range(feat_offsets[p], feat_offsets[p + 1]):
        z += params[1 + feat_code[q]] * feat_value[q]
    s = _sigmoid(z)
    r = n * s - conversions
    grad[0] += r
    for q in range(feat_offsets[p], feat_offsets[p + 1]):
        grad[1 + feat_code[q]] += r * feat_value[q]
    # -[y log s + (1 - y) log(1 - s)] = log(1 + e^z) - y z
    return n * _log1pexp(z) - conversions * z, s


@jit
def _penalise(params, loss, grad, l2):
    """``l2 / 2 * sum(beta**2)`` (the intercept left out) added to ``loss`` and its gradient to ``grad``."""
    for c in range(1, params.shape[0]):
        loss += 0.5 * l2 * params[c] * params[c]
        grad[c] += l2 * params[c]
    return loss, grad


@jit
def logistic_loss_grad(params, feat_offsets, feat_code, feat_value, conversions, nulls, l2):
    """Penalised negative log-likelihood and its gradient; ``params = [intercept, beta_0..beta_{C-1}]``.

    Each path row counts ``conversions`` times as a positive and ``nulls`` times as a negative example;
    the penalty ``l2 / 2 * sum(beta**2)`` leaves the intercept out.
    """
    grad = np.zeros(params.shape[0], dtype=np.float64)
    loss = 0.0
    for p in range(feat_offsets.shape[0] - 1):
        n = conversions[p] + nulls[p]
        if n == 0.0:
            continue
        loss += _row_terms(params, feat_offsets, feat_code, feat_value, p, conversions[p], n, grad)[0]
    return _penalise(params, loss, grad, l2)


@jit
def logistic_hessian(params, feat_offsets, feat_code, feat_value, conversions, nulls, l2):
    """:func:`logistic_loss_grad` and its Hessian in one pass: ``(loss, grad, hess)``, ``hess`` =
    ``Σ_p n_p s_p (1 - s_p) x_p x_pᵀ`` over the rows (``x_p`` the row's features with a leading 1), plus
    ``l2`` on the effects' diagonal."""
    k = params.shape[0]
    grad = np.zeros(k, dtype=np.float64)
    hess = np.zeros((k, k), dtype=np.float64)
    loss = 0.0
    for p in range(feat_offsets.shape[0] - 1):
        n = conversions[p] + nulls[p]
        if n == 0.0:
            continue
        row_loss, s = _row_terms(params, feat_offsets, feat_code, feat_value, p, conversions[p], n, grad)
        loss += row_loss
        w = n * s * (1.0 - s)
        hess[0, 0] += w
        for q in range(feat_offsets[p], feat_offsets[p + 1]):
            a = 1 + feat_code[q]
            wa = w * feat_value[q]
            hess[0, a] += wa
            hess[a, 0] += wa
            for r in range(feat_offsets[p], feat_offsets[p + 1]):
                hess[a, 1 + feat_code[r]] += wa * feat_value[r]
    for c in range(1, k):
        hess[c, c] += l2
    loss, grad = _penalise(params, loss, grad, l2)
    return loss, grad, hess


@jit
def add_subset_shapley(v, d, w, out):
    """Adds the exact Shapley values of the game ``v`` (one value per coalition bit mask of ``d`` players,
    ``v[0]`` the empty one) to ``out[:d]``: ``Σ_S w[|S|] (v(S ∪ {q}) - v(S))`` over the coalitions without
    ``q``, ``w[s] = s! (d - s - 1)! / d!``."""
    for s in range(1 << d):
        size = 0
        t = s
        while t:
            t &= t - 1
            size += 1
        for q in range(d):
            if not (s >> q) & 1:
                out[q] += w[size] * (v[s | (1 << q)] - v[s])


@jit
def _shapley_exact(z0, contrib, d, phi, zs, v, w):
    """Exact Shapley values of ``v(S) = σ(z0 + Σ_{c∈S} contrib[c]) - σ(z0)`` over ``d`` players."""
    n_sub = 1 << d
    zs[0] = z0
    base = _sigmoid(z0)
    v[0] = 0.0
    for s in range(1, n_sub):
        low = s & (-s)
        bit = 0
        while (1 << bit) != low:
            bit += 1
        zs[s] = zs[s ^ low] + contrib[bit]
        v[s] = _sigmoid(zs[s]) - base
    for c in range(d):
        phi[c] = 0.0
    add_subset_shapley(v, d, w, phi)


@jit
def _shapley_sampled(z0, contrib, d, phi, n_perm, key):
    """Shapley values estimated from ``n_perm`` random orderings (antithetic pairs)."""
    for c in range(d):
        phi[c] = 0.0
    order = np.arange(d)
    base = _sigmoid(z0)
    draws = 0
    for _ in range(n_perm // 2):
        draws = shuffle(order, d, key, draws)
        for direction in range(2):
            z = z0
            prev = base
            for t in range(d):
                c = order[t] if direction == 0 else order[d - 1 - t]
                z += contrib[c]
                cur = _sigmoid(z)
                phi[c] += cur - prev
                prev = cur
    for c in range(d):
        phi[c] /= 2 * (n_perm // 2)


def path_shapley(feat_offsets, feat_code, feat_value, beta, intercept, hashes, n_perm, seed):
    """Shapley values of every path's game over its distinct channels.

    Returns ``phi`` aligned with ``feat_code`` (one value per distinct channel of each path) and the
    number of paths that were sampled (more than :data:`EXACT_MAX_CHANNELS` channels). The paths are
    computed in chunks on threads.
    """
    p_rows = feat_offsets.shape[0] - 1
    phi = np.empty(feat_code.shape[0], dtype=np.float64)
    d_exact = min(int(np.diff(feat_offsets).max(initial=0)), EXACT_MAX_CHANNELS)
    sampled = np.zeros(p_rows, dtype=np.int64)
    model = (feat_offsets, feat_code, feat_value, beta, intercept, hashes, n_perm, seed, d_exact)
    run_parallel(_path_shapley_rows, [(*model, lo, hi, phi, sampled) for lo, hi in row_chunks(p_rows)])
    return phi, int(sampled.sum())


@jit
def _path_shapley_rows(
    feat_offsets, feat_code, feat_value, beta, intercept, hashes, n_perm, seed, d_exact, p_lo, p_hi, phi, sampled
):
    """:func:`path_shapley` of the paths ``p_lo:p_hi``, into ``phi`` and ``sampled``."""
    # w[s] = s! (d - s - 1)! / d! for every d: computed per path from log-gamma.
    for p in range(p_lo, p_hi):
        a = feat_offsets[p]
        d = feat_offsets[p + 1] - a
        if d == 0:
            continue
        contrib = np.empty(d, dtype=np.float64)
        for q in range(d):
            contrib[q] = beta[feat_code[a + q]] * feat_value[a + q]
        out = np.empty(d, dtype=np.float64)
        if d <= d_exact:
            w = np.empty(d, dtype=np.float64)
            for s in range(d):
                w[s] = math.exp(math.lgamma(s + 1) + math.lgamma(d - s) - math.lgamma(d + 1))
            n_sub = 1 << d
            _shapley_exact(intercept, contrib, d, out, np.empty(n_sub), np.empty(n_sub), w)
        else:
            sampled[p] = 1
            _shapley_sampled(intercept, contrib, d, out, n_perm, mix64(np.uint64(seed) ^ hashes[p]))
        for q in range(d):
            phi[a + q] = out[q]


# --- the touch-level (discrete-time hazard) form -----------------------------------------------------------
# Every touch of a journey is a decision point: h_j = σ(b + Σ_c β_c f(K_c(j))), K_c(j) the touches of c up to
# and including touch j. A converting journey converts at its last touch; p(journey) = 1 - Π_j (1 - h_j).


@jit
def _f(k, rho):
    return float(k) if rho <= 0.0 else (1.0 - rho**k) / (1.0 - rho)


@jit
def _hazard_rows(params, offsets, codes, conversions, nulls, rho, want_hessian, lo, hi, grad, hess):
    """Loss of path rows ``lo:hi`` of the touch-level model; adds their gradient (and Hessian) in place."""
    n_codes = params.shape[0] - 1
    counts = np.zeros(max(n_codes, 1), dtype=np.int64)
    seen = np.empty(max(n_codes, 1) + 1, dtype=np.int64)  # 0 (intercept) then 1 + code of channels seen
    x = np.zeros(params.shape[0], dtype=np.float64)
    loss = 0.0
    for p in range(lo, hi):
        a, e = offsets[p], offsets[p + 1]
        n = conversions[p] + nulls[p]
        if n == 0.0 or e == a:
            continue
        z = params[0]
        seen[0] = 0
        x[0] = 1.0
        d = 1
        for j in range(a, e):
            c = codes[j]
            if counts[c] == 0:
                seen[d] = 1 + c
                d += 1
            counts[c] += 1
            fk = _f(counts[c], rho)
            z += params[1 + c] * (fk - _f(counts[c] - 1, rho))
            x[1 + c] = fk
            s = _sigmoid(z)
            if j < e - 1:  # every journey of the row survives this touch
                loss += n * _log1pexp(z)
                r = n * s
            else:  # the last touch: conversions convert here, nulls survive it
                loss += n * _log1pexp(z) - conversions[p] * z
                r = n * s - conversions[p]
            for u in range(d):
                grad[seen[u]] += r * x[seen[u]]
            if want_hessian:
                wgt = n * s * (1.0 - s)
                for u in range(d):
                    xu = wgt * x[seen[u]]
                    for v in range(d):
                        hess[seen[u], seen[v]] += xu * x[seen[v]]
        for u in range(1, d):
            counts[seen[u] - 1] = 0
            x[seen[u]] = 0.0
    return loss


_HAZARD_CHUNKS = 64  # fixed, so that sums do not depend on the number of threads


def hazard_terms(params, offsets, codes, conversions, nulls, l2, rho, want_hessian):
    """Penalised negative log-likelihood of the touch-level model, its gradient and (optionally) Hessian.

    ``params = [intercept, beta_0..beta_{C-1}]``; a path row counts ``conversions`` journeys that convert
    at their last touch and ``nulls`` that never convert. The penalty ``l2 / 2 * sum(beta**2)`` leaves the
    intercept out. Rows are summed in fixed chunks (on threads), then the chunks in order.
    """
    n_par = params.shape[0]
    p_rows = offsets.shape[0] - 1
    h_size = n_par if want_hessian else 1
    # at most 128 MiB of per-chunk Hessians (many channels: fewer chunks)
    n_chunks = max(1, min(_HAZARD_CHUNKS, p_rows, (1 << 24) // (h_size * h_size)))
    losses = np.zeros(n_chunks, dtype=np.float64)
    grads = np.zeros((n_chunks, n_par), dtype=np.float64)
    hessians = np.zeros((n_chunks, h_size, h_size), dtype=np.float64)
    model = (params, offsets, codes, conversions, nulls, rho, want_hessian)
    tasks = [(*model, a, b, n_chunks, losses, grads, hessians) for a, b in thread_ranges(n_chunks)]
    run_parallel(_hazard_chunks, tasks)
    loss, grad, hess = sum_in_order(losses, grads, hessians)
    for c in range(1, n_par):
        loss += 0.5 * l2 * params[c] * params[c]
        grad[c] += l2 * params[c]
        if want_hessian:
            hess[c, c] += l2
    return loss, grad, hess


@jit
def _hazard_chunks(
    params, offsets, codes, conversions, nulls, rho, want_hessian, k_lo, k_hi, n_chunks, losses, grads, hessians
):
    """:func:`_hazard_rows` of chunks ``k_lo:k_hi`` of ``n_chunks`` equal row ranges, each into its own slot."""
    p_rows = offsets.shape[0] - 1
    for k in range(k_lo, k_hi):
        lo = p_rows * k // n_chunks
        hi = p_rows * (k + 1) // n_chunks
        losses[k] = _hazard_rows(
            params, offsets, codes, conversions, nulls, rho, want_hessian, lo, hi, grads[k], hessians[k]
        )


@jit
def _hazard_value(intercept, delta, player, mask, base_survival):
    """v(S) = p(journey with only S's effects) - p(no effect), S a bit mask over the path's players."""
    z = intercept
    survive = 1.0
    for j in range(delta.shape[0]):
        if (mask >> player[j]) & 1:
            z += delta[j]
        survive *= 1.0 - _sigmoid(z)
    return base_survival - survive


def hazard_shapley(offsets, codes, beta, intercept, rho, hashes, n_perm, seed):
    """Per path, the Shapley values of ``v`` over its distinct channels (first-occurrence order).

    Returns ``phi`` aligned with :func:`count_features`' ``feat_code`` and the number of sampled paths. The
    paths are computed in chunks on threads.
    """
    p_rows = offsets.shape[0] - 1
    d_of = _players_offsets(offsets, codes, beta.shape[0])
    phi = np.empty(d_of[p_rows], dtype=np.float64)
    sampled = np.zeros(p_rows, dtype=np.int64)
    model = (offsets, codes, beta, intercept, rho, hashes, n_perm, seed, d_of)
    run_parallel(_hazard_shapley_rows, [(*model, lo, hi, phi, sampled) for lo, hi in row_chunks(p_rows)])
    return phi, int(sampled.sum())


@jit
def _players_offsets(offsets, codes, n_codes):
    """Per path, where its distinct channels start in the flat output (first-occurrence order)."""
    p_rows = offsets.shape[0] - 1
    d_of = np.zeros(p_rows + 1, dtype=np.int64)
    seen = np.zeros(max(n_codes, 1), dtype=np.bool_)
    for p in range(p_rows):
        d = 0
        for j in range(offsets[p], offsets[p + 1]):
            if not seen[codes[j]]:
                seen[codes[j]] = True
                d += 1
        for j in range(offsets[p], offsets[p + 1]):
            seen[codes[j]] = False
        d_of[p + 1] = d_of[p] + d
    return d_of


@jit
def _hazard_shapley_rows(offsets, codes, beta, intercept, rho, hashes, n_perm, seed, d_of, p_lo, p_hi, phi, sampled):
    """:func:`hazard_shapley` of the paths ``p_lo:p_hi``, into ``phi`` and ``sampled``."""
    n_codes = beta.shape[0]
    for p in range(p_lo, p_hi):
        a, e = offsets[p], offsets[p + 1]
        m = e - a
        d = d_of[p + 1] - d_of[p]
        if d == 0:
            continue
        local = np.full(max(n_codes, 1), -1, dtype=np.int64)
        counts = np.zeros(max(n_codes, 1), dtype=np.int64)
        player = np.empty(m, dtype=np.int64)
        delta = np.empty(m, dtype=np.float64)
        nxt = 0
        for j in range(m):
            c = codes[a + j]
            if local[c] < 0:
                local[c] = nxt
                nxt += 1
            player[j] = local[c]
            counts[c] += 1
            delta[j] = beta[c] * (_f(counts[c], rho) - _f(counts[c] - 1, rho))
        base = (1.0 - _sigmoid(intercept)) ** m
        out = phi[d_of[p] : d_of[p + 1]]
        for q in range(d):
            out[q] = 0.0
        if d <= EXACT_MAX_CHANNELS:
            n_sub = 1 << d
            v = np.empty(n_sub, dtype=np.float64)
            for s in range(n_sub):
                v[s] = _hazard_value(intercept, delta, player, s, base)
            w = np.empty(d, dtype=np.float64)
            for s in range(d):
                w[s] = math.exp(math.lgamma(s + 1) + math.lgamma(d - s) - math.lgamma(d + 1))
            add_subset_shapley(v, d, w, out)
        else:
            sampled[p] = 1
            order = np.arange(d)
            key = mix64(np.uint64(seed) ^ hashes[p])
            draws = 0
            for _ in range(n_perm):
                draws = shuffle(order, d, key, draws)
                mask = 0
                prev = 0.0
                for t in range(d):
                    mask |= 1 << order[t]
                    cur = _hazard_value(intercept, delta, player, mask, base)
                    out[order[t]] += cur - prev
                    prev = cur
            for q in range(d):
                out[q] /= n_perm
        for j in range(m):
            local[codes[a + j]] = -1


@jit
def hazard_predict(offsets, codes, beta, intercept, rho):
    """p(journey) = 1 - Π_j (1 - h_j) of every path under the touch-level model."""
    p_rows = offsets.shape[0] - 1
    out = np.empty(p_rows, dtype=np.float64)
    counts = np.zeros(max(beta.shape[0], 1), dtype=np.int64)
    for p in range(p_rows):
        z = intercept
        survive = 1.0
        for j in range(offsets[p], offsets[p + 1]):
            c = codes[j]
            counts[c] += 1
            z += beta[c] * (_f(counts[c], rho) - _f(counts[c] - 1, rho))
            survive *= 1.0 - _sigmoid(z)
        for j in range(offsets[p], offsets[p + 1]):
            counts[codes[j]] = 0
        out[p] = 1.0 - survive
    return out
