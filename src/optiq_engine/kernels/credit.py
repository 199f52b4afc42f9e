"""Touchpoint credit of the data-driven models (docs/data_driven.md §5)."""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .alloc import split_value
from .paths import has_non_direct
from .threads import run_parallel

__all__ = ["share_links", "window_fraction"]


@jit
def _share_chunk(
    lo, link_offsets, tp_code, is_direct, drop_direct, cv_value, shares, share_row, scale, max_n, j_lo, j_hi, out
):
    """:func:`share_links` of conversions ``j_lo:j_hi``, into ``out`` = (weights, credit, uncredited)."""
    weights, credit, uncredited = out
    n_codes = shares.shape[1]
    counts = np.zeros(max(n_codes, 1), dtype=np.int64)
    frac = np.empty(max_n, dtype=np.float64)
    used = np.empty(max_n, dtype=np.bool_)
    for j in range(j_lo, j_hi):
        base = link_offsets[j]
        n = link_offsets[j + 1] - base
        if n == 0:
            continue
        a = lo[j]
        skip_direct = drop_direct and has_non_direct(tp_code, a, a + n, is_direct)
        for k in range(n):
            if not (skip_direct and is_direct[tp_code[a + k]]):
                counts[tp_code[a + k]] += 1
        row = share_row[j]
        w = weights[base : base + n]
        total = 0.0
        for k in range(n):
            x = 0.0
            if not (skip_direct and is_direct[tp_code[a + k]]):
                code = tp_code[a + k]
                x = shares[row, code] / counts[code] * scale[code]
            w[k] = x
            total += x
        for k in range(n):
            counts[tp_code[a + k]] = 0
        if total > 0.0:
            for k in range(n):
                w[k] = w[k] / total
            split_value(cv_value[j], w, credit[base : base + n], frac, used)
        else:
            uncredited[j] = True
            for k in range(n):
                w[k] = 0.0
                credit[base + k] = 0


def share_links(lo, link_offsets, tp_code, is_direct, drop_direct, cv_value, shares, share_row, scale, chunk_bounds):
    """Weights and credited micros of every link from per-channel shares and balancing multipliers.

    Touch ``i`` of a conversion with channel ``c_i`` gets ``raw_i = share[c_i] / (touches of c_i)`` and
    ``w_i = raw_i · scale[c_i]``, normalised over the conversion's touches. A conversion whose ``w`` are all
    0 (no channel of its journey is credited by the model: a baseline conversion) is *uncredited*: its
    weights and credited micros are 0 and the caller gives it no links for this model.

    Parameters
    ----------
    lo, link_offsets : int64[m], int64[m + 1]
        Eligible sorted-touchpoint range start and cumulative link counts (see ``heuristic_links``).
    tp_code : int32[n]
        Sorted touchpoints' channel codes.
    is_direct, drop_direct : bool[C], bool
        With ``drop_direct``, direct touches of a conversion that also has non-direct touches get no share.
    cv_value : int64[m]
    shares : float64[R, C]
        Non-negative shares per channel code, one row per share vector.
    share_row : int64[m]
        Row of ``shares`` that each conversion uses.
    scale : float64[C]
        Non-negative multiplier of every channel code (``kernels.balance.balance_columns``).
    chunk_bounds : int64[c + 1]

    Returns
    -------
    weights : float64[L]
    credit : int64[L]
    uncredited : bool[m]
        Conversions (with eligible touchpoints) that the model credits to no channel.
    """
    m = lo.shape[0]
    n_links = int(link_offsets[m])
    out = (np.empty(n_links, dtype=np.float64), np.empty(n_links, dtype=np.int64), np.zeros(m, dtype=np.bool_))
    max_n = int(np.diff(link_offsets).max(initial=0))
    args = (lo, link_offsets, tp_code, is_direct, drop_direct, cv_value, shares, share_row, scale, max_n)
    bounds = zip(chunk_bounds[:-1].tolist(), chunk_bounds[1:].tolist(), strict=True)
    run_parallel(_share_chunk, [(*args, a, b, out) for a, b in bounds])
    return out


@jit
def window_fraction(lo, hi, tp_code, shares, share_row, p):
    """Per conversion, the probability that the channels of its window caused it: ``Σ_c shares[row, c]``
    over the distinct channels ``c`` of its touchpoints ``lo:hi``, divided by ``p[row]``, clipped to [0, 1]
    (0 when ``p[row] <= 0`` or the window is empty; docs/data_driven.md §5).

    Parameters
    ----------
    lo, hi : int64[m]
        Each conversion's window: sorted touchpoints ``lo[j]:hi[j]``.
    tp_code : int32[n]
        Sorted touchpoints' channel codes.
    shares : float64[R, C]
        Non-negative credit per (row, channel code).
    share_row : int64[m]
        Row of ``shares`` and ``p`` of each conversion.
    p : float64[R]
        Conversion probability of each row.

    Returns
    -------
    float64[m]
    """
    m = lo.shape[0]
    out = np.zeros(m, dtype=np.float64)
    seen = np.zeros(max(shares.shape[1], 1), dtype=np.int64)  # stamp j + 1: channel already summed for j
    for j in range(m):
        row = share_row[j]
        if p[row] <= 0.0:
            continue
        total = 0.0
        for i in range(lo[j], hi[j]):
            c = tp_code[i]
            if seen[c] != j + 1:
                seen[c] = j + 1
                total += shares[row, c]
        out[j] = min(max(total / p[row], 0.0), 1.0)
    return out
