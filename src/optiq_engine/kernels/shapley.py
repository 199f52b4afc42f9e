"""Shapley values of coalition games over bit sets (docs/data_driven.md §4, §6)."""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .threads import run_parallel, thread_ranges

__all__ = ["path_masks", "coalition_shapley", "popcount"]


@jit
def popcount(x):
    """Number of set bits of a uint64."""
    n = 0
    while x:
        x &= x - np.uint64(1)
        n += 1
    return n


@jit
def path_masks(offsets, codes, player):
    """Bit set of the distinct players of every path (``player[code]`` is the code's bit, 0..63)."""
    p_rows = offsets.shape[0] - 1
    masks = np.zeros(p_rows, dtype=np.uint64)
    for p in range(p_rows):
        m = np.uint64(0)
        for i in range(offsets[p], offsets[p + 1]):
            m |= np.uint64(1) << np.uint64(player[codes[i]])
        masks[p] = m
    return masks


@jit
def _weights(n):
    """w[s] = s! (n - s - 1)! / n! for s = 0..n-1 (via log-gamma: no overflow for n <= 64)."""
    w = np.empty(max(n, 1), dtype=np.float64)
    for s in range(n):
        w[s] = math.exp(math.lgamma(s + 1) + math.lgamma(n - s) - math.lgamma(n + 1))
    return w


def coalition_shapley(masks, value, n, subset_sum):
    """Exact Shapley values of a game that is zero outside the observed coalitions.

    Parameters
    ----------
    masks : uint64[T]
        Distinct observed coalitions (players are bits 0..n-1).
    value : float64[T]
        ``v(T)`` (``subset_sum=False``), or the worth ``r(T)`` of ``v(S) = Σ_{T ⊆ S} r(T)``
        (``subset_sum=True``; then ``φ_c = Σ_{T ∋ c} r(T) / |T|``).
    n : int
        Number of players (<= 64).

    Returns
    -------
    phi : float64[n]
    """
    w = _weights(n)
    phi = np.zeros(n, dtype=np.float64)
    run_parallel(_players_phi, [(masks, value, n, subset_sum, w, a, b, phi) for a, b in thread_ranges(n)])
    return phi


@jit
def _players_phi(masks, value, n, subset_sum, w, c_lo, c_hi, phi):
    """:func:`coalition_shapley` of the players ``c_lo:c_hi``, into ``phi``."""
    for c in range(c_lo, c_hi):
        bit = np.uint64(1) << np.uint64(c)
        acc = 0.0
        for t in range(masks.shape[0]):
            size = popcount(masks[t])
            if masks[t] & bit:
                acc += value[t] / size if subset_sum else w[size - 1] * value[t]
            elif not subset_sum and size < n:
                acc -= w[size] * value[t]
        phi[c] = acc
