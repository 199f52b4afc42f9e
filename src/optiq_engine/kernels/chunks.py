"""Work chunks of the parallel kernels: contiguous ranges of items balanced by the work they hold."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["balanced_chunks"]


@jit
def balanced_chunks(offsets, n_chunks):
    """Boundaries of at most ``n_chunks`` contiguous chunks of items holding about equal amounts of work.

    Parameters
    ----------
    offsets : int64[n + 1]
        Item ``i`` holds the work ``offsets[i]:offsets[i + 1]`` (links of a conversion, touches of a user).
    n_chunks : int
        The most chunks; a fixed number, so that the chunks (and what the parallel kernels compute over them)
        never depend on the number of threads.

    Returns
    -------
    int64[k + 1]
        Increasing item boundaries from 0 to ``n`` (``k <= n_chunks``; ``[0]`` when there is no item): chunk
        ``c`` ends at the first item at or past ``c / n_chunks`` of the work, and empty chunks are dropped.
    """
    n = offsets.shape[0] - 1
    total = offsets[n]
    bounds = np.empty(n_chunks + 1, dtype=np.int64)
    bounds[0] = 0
    k = 1
    for c in range(1, n_chunks):
        u = np.searchsorted(offsets, -(-total * c // n_chunks))  # ceil(total * c / n_chunks)
        if bounds[k - 1] < u < n:
            bounds[k] = u
            k += 1
    if bounds[k - 1] < n:
        bounds[k] = n
        k += 1
    return bounds[:k]
