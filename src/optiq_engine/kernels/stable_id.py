"""Stable ids: ``prefix + "_" + hex32`` of a key's UTF-8 bytes, independent of any library's hash.

``b = part_1 + 0x1F + part_2 + ... + part_k`` (a null part is the single byte 0x00);
``h1`` = FNV-1a 64 of ``b`` (offset basis ``0xcbf29ce484222325``, prime ``0x100000001b3``) followed by the
splitmix64 finaliser, ``h2`` the same with offset basis ``0x84222325cbf29ce4``, and
``hex32 = format(h1, "016x") + format(h2, "016x")`` (``docs/journeys.md``, "Stable ids").

:func:`key_hashes` reads the parts straight from Arrow string buffers; :func:`hex_ids` writes the ids as
fixed-width ASCII rows that become an Arrow string array without a copy per string.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .splitmix import mix64
from .threads import row_chunks, run_parallel

__all__ = ["FNV_OFFSET_1", "FNV_OFFSET_2", "FNV_PRIME", "hex_ids", "key_hashes"]

FNV_OFFSET_1 = 0xCBF29CE484222325
FNV_OFFSET_2 = 0x84222325CBF29CE4
FNV_PRIME = 0x100000001B3
_SEPARATOR = 0x1F
_NULL = 0x00
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def key_hashes(offsets, data, valid, rows):
    """``(h1, h2)`` of ``m`` keys whose parts are strings of ``k`` Arrow columns.

    Parameters
    ----------
    offsets : tuple of K int64[n_c + 1]
        Arrow (large) string offsets of each part's column (``K >= k``: columns past ``k`` are unused, so a
        caller can always pass the same tuple length and compile once).
    data : tuple of K uint8[...]
        Arrow string data buffers of each part's column.
    valid : tuple of K bool[n_c]
        Whether the column's value is non-null (a null part hashes as the single byte 0x00).
    rows : int64[k, m]
        ``rows[c, i]`` is the row of column ``c`` that is part ``c`` of key ``i``. Increasing rows make the
        reads sequential (several times faster on large columns); any order gives the same hashes.

    Returns
    -------
    uint64[m, 2]
        ``(h1, h2)`` of each key: FNV-1a 64 of ``part_1 + 0x1F + ... + part_k`` from the two offset bases,
        each finalised by splitmix64 (side by side, so that reading one key's pair costs one cache miss).
    """
    m = rows.shape[1]
    out = np.empty((m, 2), dtype=np.uint64)
    run_parallel(_key_rows, [(offsets, data, valid, rows, lo, hi, out) for lo, hi in row_chunks(m, 8)])
    return out


@jit
def _key_rows(offsets, data, valid, rows, lo, hi, out):
    """:func:`key_hashes` of keys ``lo:hi``, into ``out``."""
    k = rows.shape[0]
    prime = np.uint64(FNV_PRIME)
    sep = np.uint64(_SEPARATOR)
    null = np.uint64(_NULL)
    for i in range(lo, hi):
        h1 = np.uint64(FNV_OFFSET_1)
        h2 = np.uint64(FNV_OFFSET_2)
        for part in range(k):
            if part > 0:
                h1 = (h1 ^ sep) * prime
                h2 = (h2 ^ sep) * prime
            r = rows[part, i]
            if not valid[part][r]:
                h1 = (h1 ^ null) * prime
                h2 = (h2 ^ null) * prime
                continue
            buf = data[part]
            for j in range(offsets[part][r], offsets[part][r + 1]):
                b = np.uint64(buf[j])
                h1 = (h1 ^ b) * prime
                h2 = (h2 ^ b) * prime
        out[i, 0] = mix64(h1)
        out[i, 1] = mix64(h2)


def hex_ids(prefix, hashes, index):
    """Fixed-width ids ``prefix + format(h1, "016x") + format(h2, "016x")`` as ASCII bytes.

    Parameters
    ----------
    prefix : uint8[p]
        Bytes written before the hash, including the ``_`` (``b"jr_"``).
    hashes : uint64[m, 2]
        ``(h1, h2)`` pairs from :func:`key_hashes`.
    index : int64[q]
        Id ``i`` is made of pair ``index[i]``.

    Returns
    -------
    uint8[q, p + 32]
        Row ``i`` is the id's bytes.
    """
    q = index.shape[0]
    out = np.empty((q, prefix.shape[0] + 32), dtype=np.uint8)
    run_parallel(_hex_rows, [(prefix, hashes, index, lo, hi, out) for lo, hi in row_chunks(q, 8)])
    return out


@jit
def _hex_rows(prefix, hashes, index, lo, hi, out):
    """:func:`hex_ids` of ids ``lo:hi``, into ``out``."""
    p = prefix.shape[0]
    hex_digits = _HEX
    for i in range(lo, hi):
        a = hashes[index[i], 0]
        b = hashes[index[i], 1]
        for j in range(p):
            out[i, j] = prefix[j]
        for j in range(16):
            shift = np.uint64(60 - 4 * j)
            out[i, p + j] = hex_digits[np.int64((a >> shift) & np.uint64(15))]
            out[i, p + 16 + j] = hex_digits[np.int64((b >> shift) & np.uint64(15))]
