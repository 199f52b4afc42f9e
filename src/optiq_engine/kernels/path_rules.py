"""Path rules of the heuristic models: which touches of a conversion's window are credited.

docs/attribution.md "Path rules": the latest ``max_touchpoints`` touches of the window, then the direct
rule, then the touch rule, each applied to the touches the previous step kept.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .threads import run_parallel

__all__ = [
    "ALL",
    "COLLAPSE_REPEATS",
    "FIRST_PER_CHANNEL",
    "KEEP_DIRECT",
    "DROP_DIRECT_UNLESS_ALL",
    "DROP_TRAILING_DIRECT_UNLESS_ALL",
    "kept_touches",
]

# Kernel codes of AttributionConfig.touch_rule and AttributionConfig.drop_direct.
ALL, COLLAPSE_REPEATS, FIRST_PER_CHANNEL = range(3)
KEEP_DIRECT, DROP_DIRECT_UNLESS_ALL, DROP_TRAILING_DIRECT_UNLESS_ALL = range(3)


def kept_touches(lo, hi, link_offsets, tp_code, is_direct, touch_rule, drop_direct, max_touchpoints, chunk_bounds):
    """Whether each (conversion, touchpoint) link's touch is credited by the heuristic models.

    Per conversion, on its eligible touches in position order:

    1. ``max_touchpoints > 0``: only the latest ``max_touchpoints`` touches are candidates;
    2. ``drop_direct``: ``DROP_DIRECT_UNLESS_ALL`` removes the direct touches, ``DROP_TRAILING_DIRECT_UNLESS_ALL``
       the run of direct touches that ends the path, both only if a candidate is not direct;
    3. ``touch_rule``: ``COLLAPSE_REPEATS`` keeps the first touch of each run of consecutive candidates of
       one channel, ``FIRST_PER_CHANNEL`` the first candidate of each channel, ``ALL`` every candidate.

    At least one touch of every non-empty window is kept.

    Parameters
    ----------
    lo, hi : int64[m]
        Eligible sorted-touchpoint range of each conversion (see :func:`match_windows`).
    link_offsets : int64[m + 1]
        Cumulative link counts: conversion ``j``'s links are ``link_offsets[j]:link_offsets[j+1]``.
    tp_code : int32[n]
        Sorted touchpoints' channel codes.
    is_direct : bool[n_channels]
        Whether a channel code is direct (``AttributionConfig.direct_channels``).
    touch_rule, drop_direct, max_touchpoints : int
        Codes of this module and the cap (0: none).
    chunk_bounds : int64[c + 1]
        Conversion ranges handled by one thread each.

    Returns
    -------
    keep : bool[L]
    """
    keep = np.empty(int(link_offsets[-1]), dtype=np.bool_)
    n_codes = max(is_direct.shape[0], 1) if touch_rule == FIRST_PER_CHANNEL else 1
    args = (lo, hi, link_offsets, tp_code, is_direct, touch_rule, drop_direct, max_touchpoints, n_codes)
    bounds = zip(chunk_bounds[:-1].tolist(), chunk_bounds[1:].tolist(), strict=True)
    run_parallel(_kept_chunk, [(*args, a, b, keep) for a, b in bounds])
    return keep


@jit
def _kept_chunk(
    lo, hi, link_offsets, tp_code, is_direct, touch_rule, drop_direct, max_touchpoints, n_codes, j_lo, j_hi, keep
):
    """:func:`kept_touches` of conversions ``j_lo:j_hi``, into ``keep``."""
    seen = np.full(n_codes, -1, dtype=np.int64)  # conversion that last kept each channel (FIRST_PER_CHANNEL)
    for j in range(j_lo, j_hi):
        n = hi[j] - lo[j]
        if n == 0:
            continue
        base = link_offsets[j]
        code = tp_code[lo[j] : hi[j]]
        first = n - max_touchpoints if 0 < max_touchpoints < n else 0
        for k in range(n):
            keep[base + k] = k >= first
        if drop_direct != KEEP_DIRECT:
            _drop_direct(code, is_direct, drop_direct, first, keep[base : base + n])
        if touch_rule == COLLAPSE_REPEATS:
            previous = -1
            for k in range(first, n):
                if keep[base + k]:
                    if code[k] == previous:
                        keep[base + k] = False
                    previous = code[k]
        elif touch_rule == FIRST_PER_CHANNEL:
            for k in range(first, n):
                if keep[base + k]:
                    if seen[code[k]] == j:
                        keep[base + k] = False
                    seen[code[k]] = j


@jit
def _drop_direct(code, is_direct, rule, first, keep):
    """Unkeep the direct touches of ``code[first:]`` that ``rule`` removes, if one of them is not direct."""
    n = code.shape[0]
    mixed = False
    for k in range(first, n):
        if not is_direct[code[k]]:
            mixed = True
            break
    if not mixed:
        return
    if rule == DROP_DIRECT_UNLESS_ALL:
        for k in range(first, n):
            if is_direct[code[k]]:
                keep[k] = False
    else:  # DROP_TRAILING_DIRECT_UNLESS_ALL: the loop stops at the non-direct touch found above
        k = n - 1
        while is_direct[code[k]]:
            keep[k] = False
            k -= 1
