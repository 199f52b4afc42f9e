"""Exact integer split of a conversion's value by weights (largest remainder)."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["split_value"]


@jit
def _stable_argsort(keys):
    """``np.argsort(keys, kind="mergesort")`` for keys without NaN: a bottom-up merge sort of the indices,
    stable (equal keys keep their order). Written out because Numba's own mergesort takes ~0.8 s to compile,
    half of :func:`split_value`'s compile on first use."""
    n = keys.shape[0]
    a = np.empty(n, dtype=np.int64)
    for k in range(n):
        a[k] = k
    b = np.empty(n, dtype=np.int64)
    width = 1
    while width < n:
        for left in range(0, n, 2 * width):
            mid = min(left + width, n)
            right = min(left + 2 * width, n)
            i = left
            j = mid
            for k in range(left, right):
                if j >= right or (i < mid and keys[a[i]] <= keys[a[j]]):
                    b[k] = a[i]
                    i += 1
                else:
                    b[k] = a[j]
                    j += 1
        a, b = b, a
        width *= 2
    return a


@jit
def split_value(value, weights, out, frac, used):
    """Split ``value`` micros over ``weights`` so that the parts sum exactly to ``value``.

    docs/attribution.md "Value split": quota ``q = value * w`` (float64), base ``min(floor(q), value)``,
    the remainder handed out one unit at a time in rounds to the largest (fraction, position); a negative
    remainder (float rounding of huge values) taken back from the smallest (fraction, -position).

    Parameters
    ----------
    value : int64 (>= 0)
    weights : float64[n]
    out : int64[n]
        Filled with the parts.
    frac, used : float64[>= n], bool[>= n]
        Scratch buffers.
    """
    n = weights.shape[0]
    vf = float(value)
    total = 0
    for k in range(n):
        q = vf * weights[k]
        fl = np.floor(q)  # a float: Numba's math.floor returns int64, which overflows for q >= 2**63
        frac[k] = q - fl
        b = value if q >= vf else np.int64(fl)
        out[k] = b
        total += b
    r = value - total
    if r == 0 or n == 0:
        return
    if r > 8:
        # Many units to hand out: one stable sort by (fraction desc, position desc), then rounds.
        rev = np.empty(n, dtype=np.float64)
        for k in range(n):
            rev[k] = -frac[n - 1 - k]
        o = _stable_argsort(rev)
        for i in range(r):
            out[n - 1 - o[i % n]] += 1
        return
    for k in range(n):
        used[k] = False
    given = 0
    while r > 0:
        best = -1
        for k in range(n):
            if not used[k] and (best < 0 or frac[k] >= frac[best]):
                best = k
        out[best] += 1
        used[best] = True
        r -= 1
        given += 1
        if given == n:
            given = 0
            for k in range(n):
                used[k] = False
    while r < 0:
        best = -1
        for k in range(n):
            if not used[k] and out[k] > 0 and (best < 0 or frac[k] <= frac[best]):
                best = k
        if best < 0:  # every positive part was taken from in this round: start a new one
            for k in range(n):
                used[k] = False
            continue
        out[best] -= 1
        used[best] = True
        r += 1
