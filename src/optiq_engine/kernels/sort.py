"""Sorting rows by (group hash, timestamp): a parallel bucket sort.

The group key is a uniformly distributed 64-bit hash, so its top ``bits`` bits split the rows into
``2**bits`` buckets of similar size. One counting pass and one stable scatter put every row in its
bucket; each bucket (a few hundred rows, in cache) is then sorted on its own, in parallel. Touchpoints and
conversions bucketed with the same ``bits`` land in matching buckets, so later kernels can work bucket by
bucket without a global merge.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .threads import balanced_ranges, row_chunks, run_parallel, thread_count

__all__ = ["bucket_bits", "sort_by_group_time", "tie_runs"]

_INSERTION_MAX = 16


def bucket_bits(n: int, *, rows_per_bucket: int = 128, max_bits: int = 22) -> int:
    """Number of hash bits that gives about ``rows_per_bucket`` rows per bucket (at least 1).

    Parameters
    ----------
    n
        Rows to sort.
    rows_per_bucket
        Rows wanted per bucket (default 128).
    max_bits
        Most bits returned (default 22: about 4M buckets).

    Returns
    -------
    int
        The smallest ``bits`` in ``1..max_bits`` with ``n >> bits <= rows_per_bucket``.
    """
    bits = 1
    while bits < max_bits and (n >> bits) > rows_per_bucket:
        bits += 1
    return bits


_IDX_BITS = 40
_IDX_MASK = (1 << _IDX_BITS) - 1


@jit
def _rec_less(r, a, b):
    # Row order of records a, b: (h, ts, row index). Column 3 packs index | code << 40.
    if r[a, 0] != r[b, 0]:
        return r[a, 0] < r[b, 0]
    if r[a, 1] != r[b, 1]:
        return np.int64(r[a, 1]) < np.int64(r[b, 1])
    return (r[a, 3] & np.uint64(_IDX_MASK)) < (r[b, 3] & np.uint64(_IDX_MASK))


@jit
def _copy_record(src, i, dst, k):
    for c in range(4):
        dst[k, c] = src[i, c]


@jit
def _sort_records(r, lo, hi, tmp):
    """Sort records r[lo:hi] by (h, ts, row index), in place: insertion-sorted runs, then bottom-up merges."""
    for run in range(lo, hi, _INSERTION_MAX):
        end = min(run + _INSERTION_MAX, hi)
        for i in range(run + 1, end):
            j = i
            while j > run and _rec_less(r, j, j - 1):
                for c in range(4):
                    t = r[j, c]
                    r[j, c] = r[j - 1, c]
                    r[j - 1, c] = t
                j -= 1
    width = _INSERTION_MAX
    while width < hi - lo:
        for left in range(lo, hi, 2 * width):
            mid = min(left + width, hi)
            right = min(left + 2 * width, hi)
            if mid >= right:
                continue
            i = left
            j = mid
            k = 0
            while i < mid or j < right:
                if j >= right or (i < mid and not _rec_less(r, j, i)):
                    _copy_record(r, i, tmp, k)
                    i += 1
                else:
                    _copy_record(r, j, tmp, k)
                    j += 1
                k += 1
            for q in range(k):
                _copy_record(tmp, q, r, left + q)
        width *= 2


@jit
def _scatter(rec, lo, hi, shift, nb, out, out_offsets):
    """Stable counting scatter of records rec[lo:hi] into out by bucket (h >> shift) & (nb - 1)."""
    mask = np.uint64(nb - 1)
    cnt = np.zeros(nb + 1, dtype=np.int64)
    for i in range(lo, hi):
        cnt[np.int64((rec[i, 0] >> shift) & mask) + 1] += 1
    for b in range(nb):
        cnt[b + 1] += cnt[b]
    for b in range(nb + 1):  # a loop, not out_offsets[:] = cnt: the slice assignment alone compiles in ~2 s
        out_offsets[b] = cnt[b]
    for i in range(lo, hi):
        b = np.int64((rec[i, 0] >> shift) & mask)
        k = cnt[b]
        for c in range(4):
            out[k, c] = rec[i, c]
        cnt[b] = k + 1


@jit
def _bucket_counts(h, lo, hi, shift, nb):
    """Rows of ``lo:hi`` per bucket ``h >> shift``."""
    counts = np.zeros(nb, dtype=np.int64)
    for i in range(lo, hi):
        counts[h[i] >> shift] += 1
    return counts


@jit
def _fill_records(h, ts, h2, code, lo, hi, shift, cur, rec):
    """Rows ``lo:hi`` as records in ``rec``, each after the ones before it in its bucket (``cur``: next slot)."""
    for i in range(lo, hi):
        b = h[i] >> shift
        k = cur[b]
        rec[k, 0] = h[i]
        rec[k, 1] = np.uint64(ts[i])
        rec[k, 2] = h2[i]
        rec[k, 3] = np.uint64(i) | (np.uint64(code[i]) << np.uint64(_IDX_BITS))
        cur[b] = k + 1


@jit
def _sort_buckets(rec, bucket_offsets, b_lo, b_hi, shift, order, h_s, ts_s, h2_s, code_s):
    """Sort buckets ``b_lo:b_hi`` of ``rec`` and write them out; their (collisions, ties)."""
    collisions = 0
    ties = 0
    for b in range(b_lo, b_hi):
        lo = bucket_offsets[b]
        hi = bucket_offsets[b + 1]
        m = hi - lo
        if m == 0:
            continue
        sub_bits = 0
        while sub_bits < 10 and (m >> sub_bits) > 8:
            sub_bits += 1
        local = np.empty((m, 4), dtype=np.uint64)
        sub = np.empty((1 << sub_bits) + 1, dtype=np.int64)
        _scatter(rec, lo, hi, shift - np.uint64(sub_bits), 1 << sub_bits, local, sub)
        tmp = np.empty((m, 4), dtype=np.uint64)
        for s in range(1 << sub_bits):
            if sub[s + 1] - sub[s] > 1:
                _sort_records(local, sub[s], sub[s + 1], tmp)
        for k in range(m):
            order[lo + k] = np.int64(local[k, 3] & np.uint64(_IDX_MASK))
            h_s[lo + k] = local[k, 0]
            ts_s[lo + k] = np.int64(local[k, 1])
            h2_s[lo + k] = local[k, 2]
            code_s[lo + k] = local[k, 3] >> np.uint64(_IDX_BITS)
            if k > 0 and local[k, 0] == local[k - 1, 0]:
                if local[k, 2] != local[k - 1, 2]:
                    collisions += 1
                if local[k, 1] == local[k - 1, 1]:
                    ties += 1
    return collisions, ties


def sort_by_group_time(h, ts, h2, code, bits):
    """Sort rows by (group hash, timestamp, row index), carrying a check hash and a code along.

    A two-level MSD radix scatter on the hash (``bits`` top bits, then up to 10 more inside each bucket,
    in cache) followed by insertion sorts of the small sub-buckets; the counting, the scatter and the
    buckets' sorts each run on :func:`~.threads.thread_count` threads (serial kernels, :mod:`.threads`).

    Parameters
    ----------
    h : uint64[n]
        Group hash of every row (uniformly distributed).
    ts : int64[n]
        Timestamps (microseconds).
    h2 : uint64[n]
        A second, independent hash of the group key, to detect collisions of ``h``.
    code : int32[n]
        A non-negative per-row code carried along (the channel code for touchpoints), < 2**23.
    bits : int
        Bucket bits, 1..16; rows go to bucket ``h >> (64 - bits)``. Use the same value for two tables
        whose buckets must match.

    Returns
    -------
    order : int64[n]
        Row indices in sorted order.
    h_s, ts_s, h2_s, code_s
        The inputs in sorted order.
    bucket_offsets : int64[2**bits + 1]
        Rows ``bucket_offsets[b]:bucket_offsets[b+1]`` (in sorted order) are bucket ``b``.
    n_collisions : int
        Adjacent rows with equal ``h`` but different ``h2`` (non-zero means the hash merged two keys).
    n_ties : int
        Adjacent rows with equal ``h`` and ``ts`` (ordered by row index; the caller orders them by id).
    """
    n = h.shape[0]
    nb = 1 << bits
    shift = np.uint64(64 - bits)
    n_chunks = 4 if n >= 65536 else 1
    chunks = row_chunks(n, n_chunks)
    hist = np.array(run_parallel(_bucket_counts, [(h, lo, hi, shift, nb) for lo, hi in chunks]))
    # Stable scatter: chunk c's rows of bucket b follow chunk c-1's rows of bucket b.
    by_bucket = hist.T.ravel()  # (bucket, chunk) order
    start = (np.cumsum(by_bucket) - by_bucket).reshape(nb, n_chunks)
    bucket_offsets = np.append(start[:, 0], n).astype(np.int64)
    rec = np.empty((n, 4), dtype=np.uint64)
    fill = [(h, ts, h2, code, lo, hi, shift, start[:, c].copy(), rec) for c, (lo, hi) in enumerate(chunks)]
    run_parallel(_fill_records, fill)
    order = np.empty(n, dtype=np.int64)
    h_s = np.empty(n, dtype=np.uint64)
    ts_s = np.empty(n, dtype=np.int64)
    h2_s = np.empty(n, dtype=np.uint64)
    code_s = np.empty(n, dtype=code.dtype)
    parts = balanced_ranges(bucket_offsets, 4 * thread_count() if n >= 65536 else 1)
    out = (order, h_s, ts_s, h2_s, code_s)
    counts = run_parallel(_sort_buckets, [(rec, bucket_offsets, a, b, shift, *out) for a, b in parts])
    collisions = sum(c for c, _ in counts)
    ties = sum(t for _, t in counts)
    return order, h_s, ts_s, h2_s, code_s, bucket_offsets, collisions, ties


@jit
def tie_runs(h_sorted, ts_sorted):
    """Start and end (exclusive) of every run of two or more rows with equal (h, ts), in sorted data."""
    n = h_sorted.shape[0]
    starts = []
    ends = []
    i = 0
    while i < n:
        j = i + 1
        while j < n and h_sorted[j] == h_sorted[i] and ts_sorted[j] == ts_sorted[i]:
            j += 1
        if j - i > 1:
            starts.append(i)
            ends.append(j)
        i = j
    out = np.empty((len(starts), 2), dtype=np.int64)
    for k in range(len(starts)):
        out[k, 0] = starts[k]
        out[k, 1] = ends[k]
    return out
