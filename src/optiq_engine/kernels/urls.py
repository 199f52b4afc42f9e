"""Percent-decoding of URL query values held in Arrow string buffers (``docs/touchpoints.md``).

``+`` becomes a space and ``%XX`` (two hex digits, either case) the byte ``0xXX``; any other ``%`` is kept
as written. A value whose decoded bytes are not valid UTF-8 is kept exactly as written, so the output is
always valid UTF-8 and becomes an Arrow string array without a check per string.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["percent_decode"]


@jit
def _hex_value(b):
    """Value of an ASCII hex digit, -1 for any other byte."""
    if 48 <= b <= 57:
        return b - 48
    if 65 <= b <= 70:
        return b - 55
    if 97 <= b <= 102:
        return b - 87
    return -1


@jit
def _valid_utf8(buf, lo, hi):
    """Whether ``buf[lo:hi]`` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF)."""
    i = lo
    while i < hi:
        b = buf[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            n = 1
            low, high = 0x80, 0xBF
        elif b == 0xE0:
            n = 2
            low, high = 0xA0, 0xBF
        elif 0xE1 <= b <= 0xEC or 0xEE <= b <= 0xEF:
            n = 2
            low, high = 0x80, 0xBF
        elif b == 0xED:
            n = 2
            low, high = 0x80, 0x9F
        elif b == 0xF0:
            n = 3
            low, high = 0x90, 0xBF
        elif 0xF1 <= b <= 0xF3:
            n = 3
            low, high = 0x80, 0xBF
        elif b == 0xF4:
            n = 3
            low, high = 0x80, 0x8F
        else:
            return False
        if i + n >= hi:  # truncated sequence
            return False
        if not (low <= buf[i + 1] <= high):
            return False
        for k in range(2, n + 1):
            if not (0x80 <= buf[i + k] <= 0xBF):
                return False
        i += n + 1
    return True


@jit
def percent_decode(offsets, data):
    """Percent-decode every string of an Arrow (large) string array.

    Parameters
    ----------
    offsets : int64[n + 1]
        Arrow string offsets (a null's slot is read as whatever bytes it spans, normally none).
    data : uint8[...]
        Arrow string data.

    Returns
    -------
    out_offsets : int64[n + 1]
    out_data : uint8[m]
        The decoded strings (at most as long as the input), each valid UTF-8.
    """
    n = offsets.shape[0] - 1
    out = np.empty(offsets[n] - offsets[0], dtype=np.uint8)
    out_offsets = np.empty(n + 1, dtype=np.int64)
    pos = 0
    out_offsets[0] = 0
    for r in range(n):
        start = pos
        i = offsets[r]
        hi = offsets[r + 1]
        changed = False
        while i < hi:
            b = data[i]
            if b == 43:  # '+'
                out[pos] = 32
                changed = True
                i += 1
            elif b == 37 and i + 2 < hi and _hex_value(data[i + 1]) >= 0 and _hex_value(data[i + 2]) >= 0:  # '%XX'
                out[pos] = _hex_value(data[i + 1]) * 16 + _hex_value(data[i + 2])
                changed = True
                i += 3
            else:
                out[pos] = b
                i += 1
            pos += 1
        if changed and not _valid_utf8(out, start, pos):
            pos = start  # not UTF-8 once decoded: keep the value as written
            for j in range(offsets[r], hi):
                out[pos] = data[j]
                pos += 1
        out_offsets[r + 1] = pos
    return out_offsets, out[:pos].copy()
