"""The likelihood of the whole-journey model (:mod:`~optiq_engine.kernels.journey_model`; docs/data_driven.md
§6), summed over the paths' distinct prefixes instead of their touches.

Every step of the model (a touch, then: convert at it, end after it, or go on) depends only on the path up
to that touch, its *prefix*: the stock, the position and the last two channels. Paths share their prefixes
(on the simulator's 1M-journey table, 938,601 touches are 315,441 prefixes), so the likelihood is a sum over
the prefix tree's nodes, each weighted by the journeys that pass it and go on (``w_pass``) and by those that
end at it converted (``w_conv``) or not (``w_null``):

1. :func:`prefix_nodes`: the tree, once per path table (a node per distinct ``(prefix, touch, gap row)``);
2. :func:`node_stocks`: each node's stock, once per stock shape (decay and saturation);
3. :func:`node_weights`: the journeys of each node, once per set of counts (a bootstrap replicate's);
4. :func:`step_terms` / :func:`step_hessian`: the penalised negative log-likelihood, its gradient and its
   Hessian, per Newton step.

The sums equal those over the touches of every path (the tests compare them with the reference's
per-journey likelihood); only the order of the additions differs.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .journey_model import N_BUCKETS, N_POSITIONS, _effects_of, _ending_logit, n_codes_of
from .logistic import _log1pexp, _sigmoid
from .threads import run_parallel, sum_in_order, thread_ranges

__all__ = ["prefix_nodes", "node_stocks", "pair_stocks", "node_weights", "step_terms", "step_hessian"]

_CHUNKS = 64  # fixed, so that sums do not depend on the number of threads


def prefix_nodes(
    offsets: np.ndarray, codes: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The prefix tree of the paths: one node per distinct prefix, keyed by its parent (the prefix one touch
    shorter), the touch's channel and its gap row (``rows``: the decay row of each touch; all zeros on
    untimed tables). Built level by level (depth 1, 2, ...), so every parent comes before its children;
    exact (integer keys, no hashing).

    Returns
    -------
    parent, code, depth, row : int64[N], int32[N], int32[N], int8[N]
        Per node: its parent (-1 at depth 1), the channel and gap row of its last touch, its length.
    end : int64[P]
        Per path, the node of the whole path (-1: an empty path).
    """
    n_paths = offsets.shape[0] - 1
    lengths = np.diff(offsets)
    n_rows = int(rows.max(initial=0)) + 1
    stride = (int(codes.max(initial=0)) + 1) * n_rows
    end = np.full(n_paths, -1, dtype=np.int64)
    alive = np.flatnonzero(lengths > 0)
    parts: list[tuple[np.ndarray, int]] = []
    n_nodes, depth = 0, 0
    while alive.shape[0]:
        at = offsets[alive] + depth
        key = (end[alive] + 1) * stride + codes[at].astype(np.int64) * n_rows + rows[at]
        uniq, inverse = np.unique(key, return_inverse=True)
        end[alive] = n_nodes + inverse
        parts.append((uniq, depth + 1))
        n_nodes += uniq.shape[0]
        depth += 1
        alive = alive[lengths[alive] > depth]
    keys = np.concatenate([u for u, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    parent = keys // stride - 1
    code = ((keys % stride) // n_rows).astype(np.int32)
    row = (keys % n_rows).astype(np.int8)
    depths = np.concatenate([np.full(u.shape[0], k, dtype=np.int32) for u, k in parts]) if parts else code
    return parent, code, depths.astype(np.int32), row, end


@jit
def node_stocks(parent, code, depth, row, factors, sat, n_codes):
    """Each node's stock (:mod:`~optiq_engine.kernels.journey_model`: the parent's, times the decay
    ``factors[row, channel]`` of the node's touch, plus the touch's saturating increment), as CSR:
    ``(offsets int64[N + 1], channel int32[nnz], stock float64[nnz])``, the channels in first-touch order."""
    n = parent.shape[0]
    bound = 0
    for i in range(n):
        bound += min(depth[i], max(n_codes, 1))
    off = np.zeros(n + 1, dtype=np.int64)
    chan = np.empty(bound, dtype=np.int32)
    val = np.empty(bound, dtype=np.float64)
    inc = np.empty(bound, dtype=np.float64)
    for i in range(n):
        at = off[i]
        k = at
        mine = -1
        p = parent[i]
        if p >= 0:
            factor = factors[row[i]]
            for q in range(off[p], off[p + 1]):
                chan[k] = chan[q]
                val[k] = val[q] * factor[chan[q]]
                inc[k] = inc[q]
                if chan[q] == code[i]:
                    mine = k
                k += 1
        if mine < 0:
            chan[k] = code[i]
            val[k] = 0.0
            inc[k] = 1.0
            mine = k
            k += 1
        val[mine] += inc[mine]
        inc[mine] *= sat
        off[i + 1] = k
    return off, chan[: off[n]].copy(), val[: off[n]].copy()


@jit
def pair_stocks(parent, code, off, chan, val, pairs, n_real):
    """The node stocks (:func:`node_stocks`) with the pair effects' entries added: for pair ``i`` of ``pairs``
    (``(a, b, kind)``), an entry of channel code ``n_real + i`` and value 1 at each node where it holds (kind
    0: both channels have a stock; 1: some touch of ``a`` came before some touch of ``b``; 2: the first touch
    was ``a``; docs/data_driven.md §6.1, "Pairs"). Parents come before their children (:func:`prefix_nodes`)."""
    n = off.shape[0] - 1
    n_pairs = pairs.shape[0]
    has = np.zeros(max(n_real, 1), dtype=np.bool_)
    on = np.zeros((n, max(n_pairs, 1)), dtype=np.bool_)
    count = np.zeros(n + 1, dtype=np.int64)
    for node in range(n):
        p = parent[node]
        if p >= 0:
            for q in range(off[p], off[p + 1]):
                has[chan[q]] = True
        for i in range(n_pairs):
            a, b = pairs[i, 0], pairs[i, 1]
            kind = pairs[i, 2]
            if kind == 1:
                on[node, i] = (p >= 0 and on[p, i]) or (code[node] == b and has[a])
            elif kind == 2:
                on[node, i] = on[p, i] if p >= 0 else code[node] == a
            else:
                on[node, i] = (has[a] or code[node] == a) and (has[b] or code[node] == b)
        if p >= 0:
            for q in range(off[p], off[p + 1]):
                has[chan[q]] = False
        k = 0
        for i in range(n_pairs):
            k += on[node, i]
        count[node + 1] = count[node] + off[node + 1] - off[node] + k
    out_chan = np.empty(count[n], dtype=np.int32)
    out_val = np.empty(count[n], dtype=np.float64)
    for node in range(n):
        at = count[node]
        for q in range(off[node], off[node + 1]):
            out_chan[at] = chan[q]
            out_val[at] = val[q]
            at += 1
        for i in range(n_pairs):
            if on[node, i]:
                out_chan[at] = n_real + i
                out_val[at] = 1.0
                at += 1
    return count, out_chan, out_val


@jit
def node_weights(parent, end, conversions, nulls):
    """Per node, the journeys that pass it and go on (``w_pass``) and those that end at it converted
    (``w_conv``) or not (``w_null``), from each path's counts."""
    n = parent.shape[0]
    w_conv = np.zeros(n, dtype=np.float64)
    w_null = np.zeros(n, dtype=np.float64)
    w_pass = np.zeros(n, dtype=np.float64)
    for p in range(end.shape[0]):
        if end[p] >= 0:
            w_conv[end[p]] += conversions[p]
            w_null[end[p]] += nulls[p]
    for i in range(n - 1, -1, -1):  # children after their parents: each node's total is complete here
        if parent[i] >= 0:
            w_pass[parent[i]] += w_pass[i] + w_conv[i] + w_null[i]
    return w_pass, w_conv, w_null


@jit
def _node_range(params, code, cell, prev, off, chan, val, weights, use_h, use_p, lo, hi, grad):
    """Negative log-likelihood of nodes ``lo:hi`` (each: its passing step and its ending step); adds their
    gradient into ``grad``."""
    n_codes = n_codes_of(params.shape[0])
    bp = 1 + n_codes
    gg = 2 + 2 * n_codes
    w_pass, w_conv, w_null = weights
    d3 = np.zeros(3, dtype=np.float64)
    loss = 0.0
    for i in range(lo, hi):
        ends = w_conv[i] + w_null[i]
        if w_pass[i] == 0.0 and ends == 0.0:
            continue
        a = off[i]
        d = off[i + 1] - a
        ch, st = chan[a:], val[a:]
        z = params[0] + _effects_of(params, 1, ch, st, d) if use_h else 0.0
        u = _ending_logit(params, gg, n_codes, cell[i], code[i], prev[i])
        h = _sigmoid(z) if use_h else 0.0
        big_e = _sigmoid(u)
        for last in (False, True):
            n = ends if last else w_pass[i]
            if n == 0.0:
                continue
            w = params[bp] + _effects_of(params, bp + 1, ch, st, d) if (use_p and last) else 0.0
            qq = _sigmoid(w) if (use_p and last) else 0.0
            loss += _step_loss(d3, h, big_e, qq, z, u, w, last, n, w_conv[i], w_null[i], use_h, use_p)
            grad[gg + cell[i] % N_POSITIONS] += d3[1]
            if cell[i] >= N_POSITIONS:
                grad[gg + cell[i]] += d3[1]
            grad[gg + N_BUCKETS + code[i]] += d3[1]
            if prev[i] >= 0:
                grad[gg + N_BUCKETS + n_codes + prev[i]] += d3[1]
            if use_h:
                grad[0] += d3[0]
            if use_p and last:
                grad[bp] += d3[2]
            for q in range(d):
                grad[1 + ch[q]] += d3[0] * st[q]
                grad[bp + 1 + ch[q]] += d3[2] * st[q]
    return loss


@jit
def step_terms(params, code, cell, prev, off, chan, val, weights, use_h, use_p, l2):
    """Serial :func:`step_terms_parallel` (small trees: no thread start-up)."""
    grad = np.zeros(params.shape[0], dtype=np.float64)
    loss = _node_range(params, code, cell, prev, off, chan, val, weights, use_h, use_p, 0, code.shape[0], grad)
    return _penalise(params, loss, grad, use_h, use_p, l2)


def step_terms_parallel(params, code, cell, prev, off, chan, val, weights, use_h, use_p, l2):
    """Penalised negative log-likelihood of the whole-journey model and its gradient, over the prefix tree.

    The nodes are summed in fixed chunks (the same sums whatever the number of threads), the chunks on
    :func:`~.threads.thread_count` threads.

    Parameters
    ----------
    params : float64[4C + 2 + N_BUCKETS]
        ``[b_h, β_h, b_p, β_p, g, γ, γ']``.
    code, cell, prev : int32[N]
        Per node: the channel of its last touch, its length, the channel of the touch before (-1: none).
    off, chan, val
        The nodes' stocks (:func:`node_stocks`).
    weights : tuple of float64[N]
        ``(w_pass, w_conv, w_null)`` (:func:`node_weights`).
    use_h, use_p : bool
        Whether the touch (hazard) and end (decision) parts are in the model.
    l2 : float
        Penalty ``l2 / 2 (|β_h|² + |β_p|² + |γ|² + |γ'|² + |g_s|²)`` (``g_s`` the funnel stages; intercepts and the
        positions' ``g`` are not penalised).
    """
    n_chunks = max(1, min(_CHUNKS, code.shape[0]))
    losses = np.zeros(n_chunks, dtype=np.float64)
    grads = np.zeros((n_chunks, params.shape[0]), dtype=np.float64)
    tree = (params, code, cell, prev, off, chan, val, weights, use_h, use_p)
    run_parallel(_node_chunks, [(*tree, a, b, n_chunks, losses, grads) for a, b in thread_ranges(n_chunks)])
    loss, grad = sum_in_order(losses, grads)
    return _penalise(params, loss, grad, use_h, use_p, l2)


@jit
def _node_chunks(params, code, cell, prev, off, chan, val, weights, use_h, use_p, k_lo, k_hi, n_chunks, losses, grads):
    """:func:`_node_range` of chunks ``k_lo:k_hi`` of ``n_chunks`` equal ranges of the nodes, each into its
    own row of ``losses`` and ``grads``."""
    n_nodes = code.shape[0]
    for k in range(k_lo, k_hi):
        lo = n_nodes * k // n_chunks
        hi = n_nodes * (k + 1) // n_chunks
        losses[k] = _node_range(params, code, cell, prev, off, chan, val, weights, use_h, use_p, lo, hi, grads[k])


@jit
def _node_hessian_range(params, code, cell, prev, off, chan, val, weights, use_h, use_p, lo, hi, grad, hess):
    """As :func:`_node_range`, adding the Hessian into ``hess`` too, each cross block between the parts on one
    side only (:func:`_mirror` completes it). Each step's loss depends on three linear predictors: ``z``
    (touch part), ``u`` (ending) and ``w`` (end decision); its derivatives in (z, u, w) are scattered through
    their gradients."""
    n_codes = n_codes_of(params.shape[0])
    gg = 2 + 2 * n_codes
    w_pass, w_conv, w_null = weights
    idx = np.zeros((3, max(n_codes, 1) + 3), dtype=np.int64)
    coef = np.zeros((3, max(n_codes, 1) + 3), dtype=np.float64)
    cnt = np.zeros(3, dtype=np.int64)
    m3 = np.zeros((3, 3), dtype=np.float64)
    d3 = np.zeros(3, dtype=np.float64)
    loss = 0.0
    for i in range(lo, hi):
        ends = w_conv[i] + w_null[i]
        if w_pass[i] == 0.0 and ends == 0.0:
            continue
        a = off[i]
        d = off[i + 1] - a
        ch, st = chan[a:], val[a:]
        z = params[0] + _effects_of(params, 1, ch, st, d) if use_h else 0.0
        u = _ending_logit(params, gg, n_codes, cell[i], code[i], prev[i])
        h = _sigmoid(z) if use_h else 0.0
        big_e = _sigmoid(u)
        for last in (False, True):
            n = ends if last else w_pass[i]
            if n == 0.0:
                continue
            w = params[1 + n_codes] + _effects_of(params, 2 + n_codes, ch, st, d) if (use_p and last) else 0.0
            qq = _sigmoid(w) if (use_p and last) else 0.0
            _step_directions(idx, coef, cnt, ch, st, d, n_codes, gg, cell[i], code[i], prev[i], use_h, use_p, last)
            loss += _step_loss(d3, h, big_e, qq, z, u, w, last, n, w_conv[i], w_null[i], use_h, use_p)
            for r in range(3):
                for b in range(cnt[r]):
                    grad[idx[r, b]] += d3[r] * coef[r, b]
            _step_curvature(m3, h, big_e, qq, last, n, w_conv[i], w_null[i], use_h, use_p)
            _scatter(hess, m3, idx, coef, cnt)
    return loss


@jit
def step_hessian(params, code, cell, prev, off, chan, val, weights, use_h, use_p, l2):
    """:func:`step_terms` and its Hessian in one pass (any form), serial (small trees):
    ``(loss, grad, hess)``."""
    n_par = params.shape[0]
    grad = np.zeros(n_par, dtype=np.float64)
    hess = np.zeros((n_par, n_par), dtype=np.float64)
    loss = _node_hessian_range(
        params, code, cell, prev, off, chan, val, weights, use_h, use_p, 0, code.shape[0], grad, hess
    )
    loss, grad = _penalise(params, loss, grad, use_h, use_p, l2)
    return loss, grad, _penalise_hessian(_mirror(hess), use_h, use_p, l2)


def step_hessian_parallel(params, code, cell, prev, off, chan, val, weights, use_h, use_p, l2):
    """:func:`step_terms_parallel` and its Hessian in one pass (any form): ``(loss, grad, hess)``; nodes
    summed in fixed chunks, on threads."""
    n_par = params.shape[0]
    n_chunks = max(1, min(8, code.shape[0]))
    losses = np.zeros(n_chunks, dtype=np.float64)
    grads = np.zeros((n_chunks, n_par), dtype=np.float64)
    parts = np.zeros((n_chunks, n_par, n_par), dtype=np.float64)
    tree = (params, code, cell, prev, off, chan, val, weights, use_h, use_p)
    tasks = [(*tree, a, b, n_chunks, losses, grads, parts) for a, b in thread_ranges(n_chunks)]
    run_parallel(_node_hessian_chunks, tasks)
    loss, grad, hess = sum_in_order(losses, grads, parts)
    loss, grad = _penalise(params, loss, grad, use_h, use_p, l2)
    return loss, grad, _penalise_hessian(_mirror(hess), use_h, use_p, l2)


@jit
def _node_hessian_chunks(
    params, code, cell, prev, off, chan, val, weights, use_h, use_p, k_lo, k_hi, n_chunks, losses, grads, parts
):
    """:func:`_node_hessian_range` of chunks ``k_lo:k_hi`` (as :func:`_node_chunks`)."""
    n_nodes = code.shape[0]
    for k in range(k_lo, k_hi):
        lo = n_nodes * k // n_chunks
        hi = n_nodes * (k + 1) // n_chunks
        losses[k] = _node_hessian_range(
            params, code, cell, prev, off, chan, val, weights, use_h, use_p, lo, hi, grads[k], parts[k]
        )


@jit
def _penalise(params, loss, grad, use_h, use_p, l2):
    n_codes = n_codes_of(params.shape[0])
    for c in range(n_codes):
        if use_h:
            loss += 0.5 * l2 * params[1 + c] ** 2
            grad[1 + c] += l2 * params[1 + c]
        if use_p:
            loss += 0.5 * l2 * params[2 + n_codes + c] ** 2
            grad[2 + n_codes + c] += l2 * params[2 + n_codes + c]
        for k in (2 + 2 * n_codes + N_BUCKETS + c, 2 + 3 * n_codes + N_BUCKETS + c):  # γ, γ'
            loss += 0.5 * l2 * params[k] ** 2
            grad[k] += l2 * params[k]
    for k in range(2 + 2 * n_codes + N_POSITIONS, 2 + 2 * n_codes + N_BUCKETS):  # the funnel stages
        loss += 0.5 * l2 * params[k] ** 2
        grad[k] += l2 * params[k]
    return loss, grad


@jit
def _scatter(hess, m3, idx, val, cnt):
    """``hess += Σ_{r ≤ s} m3[r, s] v_r v_s^T`` for the three linear predictors (z, u, w) of one step: each
    cross block once (their parameters are disjoint; :func:`_mirror` completes the sum)."""
    for r in range(3):
        for t in range(r, 3):
            m = m3[r, t]
            if m == 0.0:
                continue
            for a in range(cnt[r]):
                ma = m * val[r, a]
                for b in range(cnt[t]):
                    hess[idx[r, a], idx[t, b]] += ma * val[t, b]


@jit
def _step_directions(idx, val, cnt, chan, stock, d, n_codes, gg, cell, c, prev, use_h, use_p, last):
    """Where the step's three linear predictors enter the parameters: ``idx[r, :cnt[r]]`` and their
    coefficients ``val[r, :cnt[r]]`` for ``z`` (touch part), ``u`` (ending) and ``w`` (end decision, at the
    last touch only); ``gg``: the first ending parameter."""
    idx[0, 0] = 0
    val[0, 0] = 1.0
    idx[2, 0] = 1 + n_codes
    val[2, 0] = 1.0
    for q in range(d):
        idx[0, q + 1] = 1 + chan[q]
        val[0, q + 1] = stock[q]
        idx[2, q + 1] = 2 + n_codes + chan[q]
        val[2, q + 1] = stock[q]
    cnt[0] = d + 1 if use_h else 0
    cnt[2] = d + 1 if (use_p and last) else 0
    idx[1, 0] = gg + cell % N_POSITIONS
    val[1, 0] = 1.0
    idx[1, 1] = gg + N_BUCKETS + c
    val[1, 1] = 1.0
    k = 2
    if prev >= 0:
        idx[1, k] = gg + N_BUCKETS + n_codes + prev
        val[1, k] = 1.0
        k += 1
    if cell >= N_POSITIONS:
        idx[1, k] = gg + cell
        val[1, k] = 1.0
        k += 1
    cnt[1] = k


@jit
def _step_curvature(m3, h, big_e, qq, last, n, a0, b0, use_h, use_p):
    """``m3``: the step's 3 x 3 second derivatives of the loss in (z, u, w), given the hazard ``h``, the ending
    ``big_e`` and the decision ``qq``; ``n`` journeys pass the step, ``a0`` of them convert and ``b0`` do not
    (at the last touch)."""
    for r in range(3):
        for t in range(3):
            m3[r, t] = 0.0
    hz = h * (1.0 - h)
    he = big_e * (1.0 - big_e)
    hq = qq * (1.0 - qq)
    if not last:
        m3[0, 0] = n * hz
        m3[1, 1] = n * he
    else:
        m3[0, 0] = b0 * hz
        m3[1, 1] = b0 * he
        m3[2, 2] = b0 * hq
        if a0 > 0.0:
            if use_h and not use_p:
                m3[0, 0] += a0 * hz
            elif use_p and not use_h:
                m3[1, 1] += a0 * he
                m3[2, 2] += a0 * hq
            else:
                s = 1.0 - h
                big_a = max(h + s * big_e * qq, 1e-300)
                ga = np.array([hz * (1.0 - big_e * qq), s * qq * he, s * big_e * hq])
                ha = np.empty((3, 3))
                ha[0, 0] = hz * (1.0 - 2.0 * h) * (1.0 - big_e * qq)
                ha[0, 1] = -hz * qq * he
                ha[0, 2] = -hz * big_e * hq
                ha[1, 1] = s * qq * he * (1.0 - 2.0 * big_e)
                ha[1, 2] = s * he * hq
                ha[2, 2] = s * big_e * hq * (1.0 - 2.0 * qq)
                ha[1, 0] = ha[0, 1]
                ha[2, 0] = ha[0, 2]
                ha[2, 1] = ha[1, 2]
                for r in range(3):
                    for t in range(3):
                        m3[r, t] += a0 * (-ha[r, t] / big_a + ga[r] * ga[t] / (big_a * big_a))


@jit
def _step_loss(d3, h, big_e, qq, z, u, w, last, n, a0, b0, use_h, use_p):
    """The step's negative log-likelihood (as :func:`_rows`) and, in ``d3``, its derivatives in (z, u, w)."""
    d3[0] = 0.0
    d3[2] = 0.0
    if not last:
        loss = n * _log1pexp(u)
        d3[1] = n * big_e
        if use_h:
            loss += n * _log1pexp(z)
            d3[0] = n * h
        return loss
    loss = b0 * _log1pexp(-u)  # non-converting: -log((1 - h) E (1 - q))
    d3[1] = -b0 * (1.0 - big_e)
    if use_h:
        loss += b0 * _log1pexp(z)
        d3[0] = b0 * h
    if use_p:
        loss += b0 * _log1pexp(w)
        d3[2] = b0 * qq
    if a0 > 0.0:  # converting: -log(h + (1 - h) E q)
        if use_h and not use_p:
            loss += a0 * _log1pexp(-z)
            d3[0] -= a0 * (1.0 - h)
        elif use_p and not use_h:
            loss += a0 * (_log1pexp(-u) + _log1pexp(-w))
            d3[1] -= a0 * (1.0 - big_e)
            d3[2] -= a0 * (1.0 - qq)
        else:
            s = 1.0 - h
            big_a = h + s * big_e * qq
            loss -= a0 * math.log(max(big_a, 1e-300))
            inv = a0 / max(big_a, 1e-300)
            d3[0] -= inv * h * s * (1.0 - big_e * qq)
            d3[1] -= inv * s * qq * big_e * (1.0 - big_e)
            d3[2] -= inv * s * big_e * qq * (1.0 - qq)
    return loss


@jit
def _mirror(hess):
    """The Hessian from :func:`_scatter`'s sums, which hold each cross block (touch part, end decision, ending:
    disjoint parameters) on one side only: ``H[i, j] = H[j, i] = A[i, j] + A[j, i]`` across blocks."""
    n_codes = n_codes_of(hess.shape[0])
    n = hess.shape[0]
    for i in range(n):
        bi = 0 if i < 1 + n_codes else (1 if i < 2 + 2 * n_codes else 2)
        for j in range(i + 1, n):
            bj = 0 if j < 1 + n_codes else (1 if j < 2 + 2 * n_codes else 2)
            if bi != bj:
                total = hess[i, j] + hess[j, i]
                hess[i, j] = total
                hess[j, i] = total
    return hess


@jit
def _penalise_hessian(hess, use_h, use_p, l2):
    n_codes = n_codes_of(hess.shape[0])
    for c in range(n_codes):
        if use_h:
            hess[1 + c, 1 + c] += l2
        if use_p:
            hess[2 + n_codes + c, 2 + n_codes + c] += l2
        for k in (2 + 2 * n_codes + N_BUCKETS + c, 2 + 3 * n_codes + N_BUCKETS + c):  # γ, γ'
            hess[k, k] += l2
    for k in range(2 + 2 * n_codes + N_POSITIONS, 2 + 2 * n_codes + N_BUCKETS):  # the funnel stages
        hess[k, k] += l2
    return hess
