"""Split ``"a > b > c"`` path strings (an Arrow string buffer) into channel codes in one pass.

The rows are split in chunks on several threads (:mod:`.threads`), each with a dictionary of its own, and
the chunks' dictionaries are merged in row order, so codes are numbered by first appearance as one pass
over the rows would number them. A token is looked up first among the last names seen with its first
byte and length (paths repeat a few channel names), and only on a miss by its hash.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .threads import balanced_ranges, run_parallel, thread_count

__all__ = ["split_paths"]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@jit
def _is_space(b):
    return b == 32 or (9 <= b <= 13)


@jit
def _same(data, a0, a1, b0, b1):
    if a1 - a0 != b1 - b0:
        return False
    for i in range(a1 - a0):  # noqa: SIM110 - Numba compiles this loop, not all() over a generator
        if data[a0 + i] != data[b0 + i]:
            return False
    return True


#: Rows below which the split runs on one thread.
_PARALLEL_ROWS = 50_000


@jit
def _find(data, a, b, h, table, hashes, names):
    """Code of the name ``data[a:b]`` (hash ``h``) in an open-addressing dictionary, else ``-1 - slot``
    with ``slot`` the free one where it goes."""
    size = table.shape[0]
    slot = np.int64(h & np.uint64(size - 1))
    while table[slot] >= 0:
        c = table[slot]
        if hashes[slot] == h and _same(data, names[c, 0], names[c, 1], a, b):
            return c
        slot = (slot + 1) & (size - 1)
    return -1 - slot


@jit
def _intern(data, a, b, table, hashes, names, n_names):
    """Code of the name ``data[a:b]``, added to the dictionary when new: ``(code, names in it now)``; the
    code is -1 when the dictionary is full (``names`` has room for as many names as it holds)."""
    h = _hash(data, a, b)
    code = _find(data, a, b, h, table, hashes, names)
    if code >= 0:
        return code, n_names
    if n_names == names.shape[0]:
        return -1, n_names
    table[-1 - code] = n_names
    hashes[-1 - code] = h
    names[n_names, 0] = a
    names[n_names, 1] = b
    return n_names, n_names + 1


@jit
def _hash(data, a, b):
    h = _FNV_OFFSET
    for i in range(a, b):
        h = (h ^ np.uint64(data[i])) * _FNV_PRIME
    return h


@jit
def _split_rows(offsets, data, sep, r_lo, r_hi, capacity):
    """Rows ``r_lo:r_hi`` split with a dictionary of their own: tokens per row, codes, names (byte ranges of
    first occurrences), ok (False past ``capacity`` names)."""
    k = sep.shape[0]
    counts = np.zeros(r_hi - r_lo, dtype=np.int64)
    n_bytes = offsets[r_hi] - offsets[r_lo]
    codes = np.empty(max(n_bytes // (k + 1) + r_hi - r_lo, 1), dtype=np.int32)  # an upper bound on tokens
    table = np.full(2 * capacity, -1, dtype=np.int64)  # open addressing at load factor <= 1/2
    hashes = np.zeros(2 * capacity, dtype=np.uint64)
    names = np.empty((capacity, 2), dtype=np.int64)
    recent = np.full(256 * 64, -1, dtype=np.int64)  # (first byte, length) -> the last code seen with them
    n_names = 0
    t = 0
    for r in range(r_lo, r_hi):
        pos = offsets[r]
        end = offsets[r + 1]
        while pos <= end:
            # token [pos, stop): up to the next separator or the end of the row
            stop = pos
            while stop < end:
                if data[stop] == sep[0] and stop + k <= end:
                    match = True
                    for q in range(1, k):
                        if data[stop + q] != sep[q]:
                            match = False
                            break
                    if match:
                        break
                stop += 1
            a, b = pos, stop
            while a < b and _is_space(data[a]):
                a += 1
            while b > a and _is_space(data[b - 1]):
                b -= 1
            if b > a:
                key = np.int64(data[a]) * 64 + min(b - a, 63)
                code = recent[key]
                if code < 0 or not _same(data, names[code, 0], names[code, 1], a, b):
                    code, n_names = _intern(data, a, b, table, hashes, names, n_names)
                    if code < 0:  # past capacity: the caller retries with a larger one
                        return counts, codes[:0], names[:0], False
                    recent[key] = code
                codes[t] = code
                t += 1
                counts[r - r_lo] += 1
            pos = stop + k
    return counts, codes[:t], names[:n_names], True


@jit
def _merge_names(data, spans, table, hashes, names, n_names):
    """Add a chunk's names (``spans``, byte ranges) to the merged dictionary, in order; the chunk's code ->
    merged code, the merged count, ok (False past the dictionary's capacity)."""
    remap = np.empty(spans.shape[0], dtype=np.int32)
    for i in range(spans.shape[0]):
        code, n_names = _intern(data, spans[i, 0], spans[i, 1], table, hashes, names, n_names)
        if code < 0:
            return remap, n_names, False
        remap[i] = code
    return remap, n_names, True


def split_paths(offsets, data, sep, capacity):
    """Tokens of every row, split on ``sep`` and stripped of ASCII white space; empty tokens dropped.

    Parameters
    ----------
    offsets : int64[n + 1]
        Arrow (large) string offsets into ``data``.
    data : uint8[...]
        UTF-8 bytes.
    sep : uint8[k]
        Separator bytes (k >= 1).
    capacity : int
        Most distinct tokens expected (a power of two); beyond it the call returns ``ok = False``.

    Returns
    -------
    row_offsets : int64[n + 1]
        Row ``i``'s codes are ``codes[row_offsets[i]:row_offsets[i + 1]]``.
    codes : int32[...]
        Token codes, numbered in order of first appearance.
    names : int64[C, 2]
        Byte range of each code's first occurrence (its name).
    ok : bool
        False when more than ``capacity`` distinct tokens were found (nothing else is valid then).
    """
    n = offsets.shape[0] - 1
    parts = balanced_ranges(offsets, thread_count()) if n >= _PARALLEL_ROWS else [(0, n)]
    chunks = run_parallel(_split_rows, [(offsets, data, sep, a, b, capacity) for a, b in parts or [(0, n)]])
    row_offsets = np.zeros(n + 1, dtype=np.int64)
    if not all(ok for *_, ok in chunks):
        return row_offsets, np.zeros(0, dtype=np.int32), np.zeros((0, 2), dtype=np.int64), False
    np.cumsum(np.concatenate([counts for counts, *_ in chunks]), out=row_offsets[1:])
    if len(chunks) == 1:
        return row_offsets, chunks[0][1], chunks[0][2], True
    table = np.full(2 * capacity, -1, dtype=np.int64)
    hashes = np.zeros(2 * capacity, dtype=np.uint64)
    names = np.empty((capacity, 2), dtype=np.int64)
    n_names, merged = 0, []
    for _, codes, spans, _ in chunks:
        remap, n_names, ok = _merge_names(data, spans, table, hashes, names, n_names)
        if not ok:
            return row_offsets, np.zeros(0, dtype=np.int32), np.zeros((0, 2), dtype=np.int64), False
        merged.append(remap[codes])
    return row_offsets, np.concatenate(merged), names[:n_names], True
