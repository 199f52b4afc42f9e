"""Journeys and path tables for the data-driven models (docs/data_driven.md §1-§2)."""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .splitmix import GOLDEN, mix64  # kernels.journey_model imports mix64 from here

__all__ = [
    "EXPOSURE",
    "UNIQUE",
    "FIRST",
    "FREQUENCY",
    "GAP_BUCKETS",
    "GAP_DAYS",
    "gap_bucket",
    "tail_ranges",
    "build_paths",
    "path_groups",
]

# Path transform codes.
EXPOSURE, UNIQUE, FIRST, FREQUENCY = range(4)

#: Gap buckets per doubling of the gap (a bucket's bounds differ by a factor ``2 ** (1 / GAP_STEPS)``).
GAP_STEPS = 4
#: The bounds (microseconds) between gap buckets: 15 minutes times ``2 ** (k / GAP_STEPS)``, up to 15 minutes
#: x 2^12 (about 43 days).
GAP_EDGES_US = np.round(900e6 * 2.0 ** (np.arange(12 * GAP_STEPS + 1) / GAP_STEPS)).astype(np.int64)
#: Gap buckets of timed paths (docs/data_driven.md §2): 0 for a path's first touch, then the time since the
#: path's previous touch: below 15 minutes, between two consecutive bounds of :data:`GAP_EDGES_US`, or above
#: the last (about 43 days).
GAP_BUCKETS = GAP_EDGES_US.shape[0] + 2
#: The gap (days) that stands for each bucket: the geometric middle of its bounds (0 for the first touch;
#: 7.5 minutes below 15 minutes; 60 days above the last bound).
GAP_DAYS = np.concatenate(
    [[0.0, 7.5 / 1440], np.sqrt(GAP_EDGES_US[:-1] * GAP_EDGES_US[1:].astype(np.float64)) / 86_400e6, [60.0]]
)


@jit
def gap_bucket(gap_us):
    """Bucket (1..GAP_BUCKETS - 1) of a gap in microseconds between two touches of a path."""
    return 1 + np.searchsorted(GAP_EDGES_US, gap_us, side="right")


@jit
def tail_ranges(tp_h, tp_ts, tp_buckets, cv_h, cv_ts, cv_buckets, lookback):
    """The non-converting tail of every group: touchpoints after its last conversion, within lookback.

    Both tables are sorted and bucketed as for :func:`optiq_engine.kernels.windows.match_windows`.
    A group's tail is its touchpoints with ``t > T_last`` (the group's last conversion, if any) and
    ``t > t_max - lookback`` (``t_max`` its last touchpoint); its whole tail drops the second condition.

    Returns
    -------
    start, whole_start, end : int64[g]
        Sorted-touchpoint ranges of the non-empty tails (``start:end``; whole: ``whole_start:end``), in
        sorted order.
    after_conversion : bool[g]
        Whether the tail's group has a conversion (the tail follows it).
    """
    n = tp_h.shape[0]
    start = np.empty(n, dtype=np.int64)
    whole_start = np.empty(n, dtype=np.int64)
    end = np.empty(n, dtype=np.int64)
    after = np.empty(n, dtype=np.bool_)
    g = 0
    nb = tp_buckets.shape[0] - 1
    for b in range(nb):
        i = tp_buckets[b]
        t_end = tp_buckets[b + 1]
        j = cv_buckets[b]
        c_end = cv_buckets[b + 1]
        while i < t_end:
            h = tp_h[i]
            e = i + 1
            while e < t_end and tp_h[e] == h:
                e += 1
            while j < c_end and cv_h[j] < h:
                j += 1
            converted = False
            t_last = tp_ts[i]  # unused unless converted
            while j < c_end and cv_h[j] == h:
                if not converted or cv_ts[j] > t_last:
                    t_last = cv_ts[j]
                converted = True
                j += 1
            w = i
            while converted and w < e and tp_ts[w] <= t_last:
                w += 1
            lower = tp_ts[e - 1] - lookback
            s = w
            while s < e and tp_ts[s] <= lower:
                s += 1
            if s < e:  # the last touchpoint is after the conversion: the whole tail is not empty either
                start[g] = s
                whole_start[g] = w
                end[g] = e
                after[g] = converted
                g += 1
            i = e
    return start[:g], whole_start[:g], end[:g], after[:g]


@jit
def has_non_direct(codes, a, b, is_direct):
    """Whether ``codes[a:b]`` holds a touch of a channel that is not direct."""
    for i in range(a, b):  # noqa: SIM110 - Numba compiles this loop, not any() over a generator
        if not is_direct[codes[i]]:
            return True
    return False


@jit
def build_paths(starts, ends, codes, code_hash, is_direct, drop_direct, transform, times):
    """Transformed channel paths of journeys, as CSR, with a content hash per path.

    Parameters
    ----------
    starts, ends : int64[J]
        Each journey's range of ``codes``.
    codes : int32[n]
        Channel codes in journey order.
    code_hash : uint64[C]
        A stable hash of each channel's *name* (so path hashes do not depend on the code numbering).
    is_direct, drop_direct : bool[C], bool
        With ``drop_direct`` (``remove_direct_if_not_all``), direct touches are removed from journeys that
        have a non-direct touch.
    transform : int
        ``EXPOSURE``, ``UNIQUE``, ``FIRST`` or ``FREQUENCY``.
    times : int64[n] or int64[0]
        The touches' times (microseconds), or empty for untimed paths.

    Returns
    -------
    offsets : int64[J + 1]
    out : int32[offsets[-1]]
    gaps : int8[offsets[-1]] (empty when untimed)
        Each kept touch's :func:`gap_bucket` since the path's previous kept touch (0: the first).
    hashes : uint64[J]
        Hash of the transformed sequence, gaps included (equal paths have equal hashes, whatever the
        partition).
    """
    timed = times.shape[0] > 0
    n_j = starts.shape[0]
    n_codes = code_hash.shape[0]
    lengths = np.zeros(n_j, dtype=np.int64)
    seen = np.zeros(max(n_codes, 1), dtype=np.bool_)
    for pass_ in range(2):
        if pass_ == 1:
            offsets = np.zeros(n_j + 1, dtype=np.int64)
            for q in range(n_j):
                offsets[q + 1] = offsets[q] + lengths[q]
            out = np.empty(offsets[n_j], dtype=np.int32)
            gaps = np.zeros(offsets[n_j] if timed else 0, dtype=np.int8)
            hashes = np.empty(n_j, dtype=np.uint64)
        for q in range(n_j):
            m = 0
            h = GOLDEN
            last = -1
            last_t = 0
            skip_direct = drop_direct and has_non_direct(codes, starts[q], ends[q], is_direct)
            for i in range(starts[q], ends[q]):
                if skip_direct and is_direct[codes[i]]:
                    continue
                c = codes[i]
                if transform == EXPOSURE:
                    if c == last:
                        continue
                elif transform == UNIQUE:
                    if seen[c]:
                        continue
                    seen[c] = True
                elif transform == FIRST and m == 1:
                    break
                last = c
                if pass_ == 1:
                    out[offsets[q] + m] = c
                    h = mix64(h ^ code_hash[c]) + GOLDEN
                    if timed:
                        g = gap_bucket(times[i] - last_t) if m > 0 else 0
                        last_t = times[i]
                        gaps[offsets[q] + m] = g
                        h = mix64(h ^ np.uint64(g + 1)) + GOLDEN
                m += 1
            if transform == UNIQUE:
                for i in range(starts[q], ends[q]):
                    seen[codes[i]] = False
            if pass_ == 0:
                lengths[q] = m
            else:
                hashes[q] = mix64(h ^ np.uint64(m))
    return offsets, out, gaps, hashes


@jit
def path_groups(order, hashes, offsets, codes, gaps):
    """Group ids of journeys sorted by path hash, checking that equal hashes hold equal paths.

    Parameters
    ----------
    order : int64[J]
        Journeys sorted by ``hashes``.
    gaps : int8[len(codes)] or int8[0]
        The touches' gap buckets (:func:`build_paths`), compared with the codes when not empty.

    Returns
    -------
    group : int64[J]
        Distinct-path id of each journey (ids numbered in hash order).
    first : int64[P]
        A representative journey of each distinct path.
    collisions : int
        Hash runs holding different paths (the caller then groups exactly).
    """
    n = order.shape[0]
    group = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    p = -1
    collisions = 0
    for i in range(n):
        q = order[i]
        if i == 0 or hashes[q] != hashes[order[i - 1]]:
            p += 1
            first[p] = q
        else:
            r = first[p]
            a, b = offsets[q], offsets[r]
            m = offsets[q + 1] - a
            same = m == offsets[r + 1] - b
            k = 0
            while same and k < m:
                same = codes[a + k] == codes[b + k] and (gaps.shape[0] == 0 or gaps[a + k] == gaps[b + k])
                k += 1
            if not same:
                collisions += 1
        group[q] = p
    return group, first[: p + 1], collisions
