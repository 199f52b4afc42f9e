"""Poisson bootstrap counts from a counter-based generator (docs/data_driven.md §7).

Replicate ``r`` of a path row with hash ``h`` draws from a stream keyed by ``(seed, r, h)`` only, so a
replicate does not depend on the order of the table or on how the journeys were partitioned.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .splitmix import GOLDEN, mix64
from .threads import row_chunks, run_parallel

__all__ = ["poisson_counts"]


@jit
def _uniform(key, i):
    """The i-th uniform in [0, 1) of stream ``key``."""
    return float(mix64(key + np.uint64(i) * GOLDEN) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@jit
def poisson(lam, key):
    """A Poisson(lam) draw from stream ``key``: inversion below 10, PTRS (Hörmann 1993) above."""
    if lam <= 0.0:
        return 0.0
    i = 0
    if lam < 10.0:
        limit = math.exp(-lam)
        prod = _uniform(key, i)
        k = 0
        while prod > limit:
            i += 1
            prod *= _uniform(key, i)
            k += 1
        return float(k)
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = _uniform(key, i) - 0.5
        v = _uniform(key, i + 1)
        i += 2
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return float(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b) <= -lam + k * loglam - math.lgamma(k + 1.0):
            return float(k)


def poisson_counts(hashes, conversions, nulls, seed, replicate):
    """Resampled (conversions, nulls) of every path row for one replicate (rows in chunks on threads)."""
    p_rows = hashes.shape[0]
    conv = np.empty(p_rows, dtype=np.float64)
    null = np.empty(p_rows, dtype=np.float64)
    base = np.uint64(_replicate_key(seed, replicate))  # a Python int from the kernel: typed as uint64
    tasks = [(hashes, conversions, nulls, base, lo, hi, conv, null) for lo, hi in row_chunks(p_rows, 8)]
    run_parallel(_poisson_rows, tasks)
    return conv, null


@jit
def _replicate_key(seed, replicate):
    return mix64(mix64(np.uint64(seed) ^ GOLDEN) ^ np.uint64(replicate))


@jit
def _poisson_rows(hashes, conversions, nulls, base, lo, hi, conv, null):
    """:func:`poisson_counts` of rows ``lo:hi``, into ``conv`` and ``null``."""
    for p in range(lo, hi):
        key = mix64(base ^ hashes[p])
        conv[p] = poisson(conversions[p], mix64(key ^ np.uint64(1)))
        null[p] = poisson(nulls[p], mix64(key ^ np.uint64(2)))
