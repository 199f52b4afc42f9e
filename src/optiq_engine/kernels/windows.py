"""Which touchpoints belong to a conversion: lookback windows over sorted groups (docs/contract.md §2).

These kernels are serial: they are memory-bound single passes (a few tens of ms for 10M touchpoints), and
compiling them with ``parallel=True`` would cost more on a first run than threads save.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["match_windows", "link_rows"]


@jit
def match_windows(tp_h, tp_ts, tp_h2, tp_buckets, cv_h, cv_ts, cv_h2, cv_buckets, lookback, reset):
    """Eligible touchpoint range of every conversion.

    Both tables are sorted by (group hash, time, tie order) and bucketed with the same bits
    (see :func:`sort_by_group_time`), so bucket ``b`` of one holds exactly the groups of bucket ``b`` of
    the other.

    Parameters
    ----------
    tp_h, tp_ts, tp_h2 : uint64[n], int64[n], uint64[n]
        Sorted touchpoints: group hash, time (us), check hash.
    tp_buckets : int64[nb + 1]
        Bucket offsets of the touchpoints.
    cv_h, cv_ts, cv_h2, cv_buckets
        The same for the conversions (m rows).
    lookback : int
        Window length in microseconds (> 0): eligible when ``T - lookback < t <= T``.
    reset : bool
        Also require ``t > T_prev`` (the previous conversion of the group).

    Returns
    -------
    lo, hi : int64[m]
        Conversion ``j``'s touchpoints are sorted rows ``lo[j]:hi[j]`` (empty when ``lo == hi``).
    start : int64[m]
        Where conversion ``j``'s journey would start without the lookback: the group's first touchpoint, or
        with ``reset`` the first after the group's previous conversion (``hi`` of that conversion); the
        ``lo[j] - start[j]`` touchpoints before the window are older than the lookback.
    group_has_touchpoints : bool[m]
        Whether the conversion's group has any touchpoint at all.
    n_collisions : int
        Groups whose check hashes differ between the two tables (non-zero: the hash merged two keys).
    """
    m = cv_h.shape[0]
    nb = cv_buckets.shape[0] - 1
    lo = np.empty(m, dtype=np.int64)
    hi = np.empty(m, dtype=np.int64)
    start = np.empty(m, dtype=np.int64)
    has = np.zeros(m, dtype=np.bool_)
    collisions = np.zeros(nb, dtype=np.int64)
    for b in range(nb):
        i = tp_buckets[b]
        t_end = tp_buckets[b + 1]
        j = cv_buckets[b]
        c_end = cv_buckets[b + 1]
        while j < c_end:
            g = cv_h[j]
            je = j + 1
            while je < c_end and cv_h[je] == g:
                je += 1
            while i < t_end and tp_h[i] < g:
                i += 1
            s = i
            e = s
            while e < t_end and tp_h[e] == g:
                e += 1
            if e > s and tp_h2[s] != cv_h2[j]:
                collisions[b] += 1
            a = s
            z = s
            for k in range(j, je):
                t = cv_ts[k]
                lower = t - lookback
                if reset and k > j and cv_ts[k - 1] > lower:
                    lower = cv_ts[k - 1]
                while a < e and tp_ts[a] <= lower:
                    a += 1
                while z < e and tp_ts[z] <= t:
                    z += 1
                lo[k] = a
                hi[k] = z if z > a else a
                start[k] = hi[k - 1] if reset and k > j else s
                has[k] = e > s
            i = e
            j = je
    return lo, hi, start, has, collisions.sum()


@jit
def link_rows(lo, link_offsets, tp_order, tp_code, cv_order, chunk_bounds):
    """Original touchpoint row, conversion row and channel code of every link.

    Parameters
    ----------
    lo, link_offsets : int64[m], int64[m + 1]
        From :func:`match_windows` and the cumulative link counts.
    tp_order, tp_code : int64[n], int32[n]
        Sorted touchpoints' original rows and channel codes.
    cv_order : int64[m]
        Sorted conversions' original rows.
    chunk_bounds : int64[c + 1]
        Conversion ranges handled by one thread each.

    Returns
    -------
    tp_row, cv_row : int64[L]
    code : int32[L]
    """
    n_links = link_offsets[-1]
    tp_row = np.empty(n_links, dtype=np.int64)
    cv_row = np.empty(n_links, dtype=np.int64)
    code = np.empty(n_links, dtype=tp_code.dtype)
    for c in range(chunk_bounds.shape[0] - 1):
        for j in range(chunk_bounds[c], chunk_bounds[c + 1]):
            base = link_offsets[j]
            for k in range(link_offsets[j + 1] - base):
                tp_row[base + k] = tp_order[lo[j] + k]
                code[base + k] = tp_code[lo[j] + k]
                cv_row[base + k] = cv_order[j]
    return tp_row, cv_row, code
