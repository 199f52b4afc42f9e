"""Reference for the window's credited fraction (docs/data_driven.md §5), written from the docs: plain Python.

A conversion whose journey's path row is ``row`` is credited to the channels of its window with
probability ``Σ max(φ_c, 0) / p(x)`` over the channels that have a touchpoint in the window, clipped to
[0, 1]; 0 with no touchpoint in the window or ``p(x) <= 0``.
"""

from __future__ import annotations


def window_fraction_reference(
    windows: list[list[int]], shares: list[list[float]], rows: list[int], p: list[float]
) -> list[float]:
    """Per conversion: ``windows[j]`` its touchpoints' channel codes, ``rows[j]`` its row of ``shares``
    (non-negative credit per channel code) and of ``p`` (conversion probability per row)."""
    out = []
    for codes, row in zip(windows, rows, strict=True):
        if p[row] <= 0 or not codes:
            out.append(0.0)
            continue
        total = sum(shares[row][c] for c in set(codes))
        out.append(min(max(total / p[row], 0.0), 1.0))
    return out
