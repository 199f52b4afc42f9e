"""Weights of the heuristic models (docs/contract.md §3) and the links they produce, in bulk."""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .alloc import split_value
from .threads import run_parallel

__all__ = [
    "FIRST_TOUCH",
    "LAST_TOUCH",
    "LAST_NON_DIRECT",
    "LINEAR",
    "POSITION_BASED",
    "TIME_DECAY",
    "heuristic_links",
]

# Kernel codes of the heuristic weight rules.
FIRST_TOUCH, LAST_TOUCH, LAST_NON_DIRECT, LINEAR, POSITION_BASED, TIME_DECAY = range(6)


@jit
def _weights(kind, p1, p2, ts, code, is_direct, w):
    """Fill w[:n] with the weights of one conversion's n touchpoints (ts, code in position order)."""
    n = w.shape[0]
    for k in range(n):
        w[k] = 0.0
    if kind == FIRST_TOUCH:
        w[0] = 1.0
    elif kind == LAST_TOUCH:
        w[n - 1] = 1.0
    elif kind == LAST_NON_DIRECT:
        k = n - 1
        while k >= 0 and is_direct[code[k]]:
            k -= 1
        w[k if k >= 0 else n - 1] = 1.0
    elif kind == LINEAR:
        for k in range(n):
            w[k] = 1.0 / n
    elif kind == POSITION_BASED:
        if n == 1:
            w[0] = 1.0
        elif n == 2:
            w[0] = p1 / (p1 + p2)
            w[1] = p2 / (p1 + p2)
        else:
            mid = (1.0 - p1 - p2) / (n - 2)
            for k in range(1, n - 1):
                w[k] = mid
            w[0] = p1
            w[n - 1] = p2
    else:  # TIME_DECAY, p1 = half-life in microseconds
        t_last = ts[n - 1]
        total = 0.0
        for k in range(n):
            w[k] = 2.0 ** (-float(t_last - ts[k]) / p1)
            total += w[k]
        for k in range(n):
            w[k] = w[k] / total


@jit
def _chunk_links(
    lo, hi, link_offsets, tp_ts, tp_code, is_direct, cv_value, kinds, p1, p2, keep, j_lo, j_hi, max_n, out
):
    """:func:`heuristic_links` for conversions ``j_lo:j_hi``, into ``out`` = (weights, credit, position, count)."""
    weights, credit, position, count = out
    n_models = kinds.shape[0]
    ruled = keep.shape[0] > 0
    frac = np.empty(max_n, dtype=np.float64)
    used = np.empty(max_n, dtype=np.bool_)
    size = max_n if ruled else 0  # the kept touches: position in the window, time, channel, weight, micros
    at = np.empty(size, dtype=np.int64)
    kept_ts = np.empty(size, dtype=np.int64)
    kept_code = np.empty(size, dtype=np.int32)
    kept_w = np.empty(size, dtype=np.float64)
    kept_credit = np.empty(size, dtype=np.int64)
    for j in range(j_lo, j_hi):
        n = hi[j] - lo[j]
        if n == 0:
            continue
        base = link_offsets[j]
        ts = tp_ts[lo[j] : hi[j]]
        code = tp_code[lo[j] : hi[j]]
        for k in range(n):
            position[base + k] = k + 1
            count[base + k] = n
        nk = n
        if ruled:
            nk = 0
            for k in range(n):
                if keep[base + k]:
                    at[nk], kept_ts[nk], kept_code[nk] = k, ts[k], code[k]
                    nk += 1
        if nk == n:  # every touch credited (the usual case): the weights in place
            for mi in range(n_models):
                w = weights[mi, base : base + n]
                _weights(kinds[mi], p1[mi], p2[mi], ts, code, is_direct, w)
                if kinds[mi] <= LAST_NON_DIRECT:  # one weight of 1: the split is exact without rounding
                    for k in range(n):
                        credit[mi, base + k] = cv_value[j] if w[k] == 1.0 else 0
                else:
                    split_value(cv_value[j], w, credit[mi, base : base + n], frac, used)
            continue
        for mi in range(n_models):  # the kept touches' weights and split, scattered; 0 elsewhere
            w = kept_w[:nk]
            _weights(kinds[mi], p1[mi], p2[mi], kept_ts[:nk], kept_code[:nk], is_direct, w)
            if kinds[mi] <= LAST_NON_DIRECT:
                for i in range(nk):
                    kept_credit[i] = cv_value[j] if w[i] == 1.0 else 0
            else:
                split_value(cv_value[j], w, kept_credit[:nk], frac, used)
            for k in range(n):
                weights[mi, base + k] = 0.0
                credit[mi, base + k] = 0
            for i in range(nk):
                weights[mi, base + at[i]] = w[i]
                credit[mi, base + at[i]] = kept_credit[i]


def heuristic_links(lo, hi, link_offsets, tp_ts, tp_code, is_direct, cv_value, kinds, p1, p2, keep, chunk_bounds):
    """Weights, credited value micros and positions of every (conversion, touchpoint, model) link.

    Parameters
    ----------
    lo, hi : int64[m]
        Eligible sorted-touchpoint range of each conversion (see :func:`match_windows`).
    link_offsets : int64[m + 1]
        Cumulative link counts: conversion ``j``'s links are ``link_offsets[j]:link_offsets[j+1]``.
    tp_ts, tp_code : int64[n], int32[n]
        Sorted touchpoints' times (us) and channel codes.
    is_direct : bool[n_channels]
        Whether a channel code counts as direct (``LAST_NON_DIRECT``).
    cv_value : int64[m]
        Conversion values in micros (>= 0), in the conversions' sorted order.
    kinds, p1, p2 : int64[M], float64[M], float64[M]
        Model codes and their parameters (``POSITION_BASED``: first, last; ``TIME_DECAY``: half-life us).
    keep : bool[L] or bool[0]
        Whether each link's touch is credited (:func:`kernels.path_rules.kept_touches`): the weights are
        those of the kept touches alone, the others get weight 0 and no micros (docs/attribution.md "Path
        rules"). Empty: every touch is kept.
    chunk_bounds : int64[c + 1]
        Conversion ranges handled by one thread each (balanced by link count).

    Returns
    -------
    weights : float64[M, L]
    credit : int64[M, L]
    position : int32[L]  (1..n)
    count : int32[L]  (n)
    """
    n_models, n_links = kinds.shape[0], int(link_offsets[-1])
    out = (
        np.empty((n_models, n_links), dtype=np.float64),
        np.empty((n_models, n_links), dtype=np.int64),
        np.empty(n_links, dtype=np.int32),
        np.empty(n_links, dtype=np.int32),
    )
    max_n = int((hi - lo).max()) if lo.shape[0] else 0
    args = (lo, hi, link_offsets, tp_ts, tp_code, is_direct, cv_value, kinds, p1, p2, keep)
    bounds = [(int(a), int(b)) for a, b in zip(chunk_bounds[:-1], chunk_bounds[1:], strict=True)]
    run_parallel(_chunk_links, [(*args, a, b, max_n, out) for a, b in bounds])
    return out


@jit
def channel_credit(weights, credit, code, n_channels):
    """Per model x channel sums of weights (float64, serial order) and credited micros (int64).

    Parameters
    ----------
    weights, credit : float64[M, L], int64[M, L]
    code : int32[L]
        Channel code of every link.
    n_channels : int

    Returns
    -------
    conversions : float64[M, n_channels]
    value : int64[M, n_channels]
    overflow : bool[M, n_channels]
        Sums of micros beyond int64 (``value`` is then meaningless).
    """
    n_models, n_links = weights.shape
    conversions = np.zeros((n_models, n_channels), dtype=np.float64)
    value = np.zeros((n_models, n_channels), dtype=np.int64)
    overflow = np.zeros((n_models, n_channels), dtype=np.bool_)
    limit = np.int64(9223372036854775807)
    for m in range(n_models):
        for i in range(n_links):
            c = code[i]
            conversions[m, c] += weights[m, i]
            x = credit[m, i]  # >= 0
            if value[m, c] > limit - x:
                overflow[m, c] = True
            else:
                value[m, c] += x
    return conversions, value, overflow
