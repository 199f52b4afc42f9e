"""Split ``"a > b > c"`` path strings (an Arrow string buffer) into channel codes in one pass."""

from __future__ import annotations

import numpy as np

from ._jit import jit

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


@jit
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
    k = sep.shape[0]
    row_offsets = np.zeros(n + 1, dtype=np.int64)
    codes = np.empty(max(data.shape[0] // (k + 1) + n, 1), dtype=np.int32)  # an upper bound on tokens
    size = 2 * capacity  # open addressing at load factor <= 1/2
    table = np.full(size, -1, dtype=np.int64)
    hashes = np.zeros(size, dtype=np.uint64)
    names = np.empty((capacity, 2), dtype=np.int64)
    n_names = 0
    t = 0
    for r in range(n):
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
                h = _FNV_OFFSET
                for i in range(a, b):
                    h = (h ^ np.uint64(data[i])) * _FNV_PRIME
                slot = np.int64(h & np.uint64(size - 1))
                code = -1
                while table[slot] >= 0:
                    c = table[slot]
                    if hashes[slot] == h and _same(data, names[c, 0], names[c, 1], a, b):
                        code = c
                        break
                    slot = (slot + 1) & (size - 1)
                if code < 0:
                    code = n_names
                    if n_names == capacity:  # the caller retries with a larger capacity
                        return row_offsets, codes[:0], names[:0], False
                    names[code, 0] = a
                    names[code, 1] = b
                    n_names += 1
                    table[slot] = code
                    hashes[slot] = h
                codes[t] = code
                t += 1
            pos = stop + k
        row_offsets[r + 1] = t
    return row_offsets, codes[:t], names[:n_names], True
