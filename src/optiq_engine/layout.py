"""How the arrays and columns that kernels and gathers read are laid out.

Kernels take read-only contiguous arrays (one array type, so one compiled signature per kernel), and
random gathers read one-chunk columns (a gather from many chunks is several times slower).
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["one_chunk", "readonly"]


def readonly(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Read-only views: kernels never write their inputs, and one array type means one compilation
    (zero-copy arrays from polars are read-only, copies are not; Numba would compile each variant).

    Parameters
    ----------
    *arrays
        Arrays of any layout; a non-contiguous one is copied to a contiguous one first.

    Returns
    -------
    tuple of numpy.ndarray
        One C-contiguous, non-writeable view per array, in order (the arrays themselves stay writeable).
    """
    views = []
    for a in arrays:
        v = np.ascontiguousarray(a).view()
        v.flags.writeable = False
        views.append(v)
    return tuple(views)


def one_chunk(ids: pl.Series) -> pl.Series:
    """The series as one chunk: a random gather from many chunks (Parquet row groups) is several times
    slower. Going through Arrow's string views concatenates the views without copying the strings.

    Parameters
    ----------
    ids
        Any series (ids in practice); returned as is when it already has one chunk.

    Returns
    -------
    polars.Series
        The same values and name, in one chunk.
    """
    if ids.n_chunks() == 1:
        return ids
    return pl.from_arrow(ids.to_arrow(compat_level=pl.CompatLevel.newest())).alias(ids.name)  # type: ignore[union-attr]
