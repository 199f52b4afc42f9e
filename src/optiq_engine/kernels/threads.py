"""Serial kernels run on several threads at once.

Every kernel is compiled with ``nogil=True`` (:mod:`._jit`): while one runs, it holds no GIL, so Python
threads calling it on disjoint parts of the data run in parallel. The engine's kernels (the sort, the
weights, the data-driven models' likelihoods and Shapley values, the bootstrap's draws, the stable ids)
split their work this way instead of Numba's ``parallel=True``, whose lowering costs seconds of compile
per kernel on the first call in a fresh environment (benchmarks/RESULTS.md "Cold start"); the run time
is the same or better. Sums over chunks are added in chunk order, so results do not depend on the
number of threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

__all__ = ["balanced_ranges", "row_chunks", "run_parallel", "sum_in_order", "thread_count", "thread_ranges"]

_POOLS: dict[int, ThreadPoolExecutor] = {}  # one pool per thread count, started on first use
_POOLS_LOCK = threading.Lock()  # two callers starting the same pool at once


def _forget_pools() -> None:
    """In a forked child: the inherited pools have no threads there, so the child starts its own."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


def thread_count() -> int:
    """Threads the kernels may use: Numba's (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``).

    Returns
    -------
    int
        At least 1.
    """
    return max(1, int(numba.get_num_threads()))


def run_parallel(kernel: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``[kernel(*args) for args in tasks]``, the tasks spread over :func:`thread_count` threads.

    Parameters
    ----------
    kernel
        A ``nogil`` kernel; the tasks must write disjoint parts of any shared output.
    tasks
        Its arguments, one tuple per call.

    Returns
    -------
    list
        The calls' results, in the order of ``tasks``.
    """
    threads = thread_count()
    if threads <= 1 or len(tasks) <= 1:
        return [kernel(*args) for args in tasks]
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="optiq-kernel")
    return list(pool.map(lambda args: kernel(*args), tasks))


def balanced_ranges(offsets: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split the items of ``offsets`` (item ``i`` owns rows ``offsets[i]:offsets[i + 1]``) into at most
    ``parts`` consecutive ranges of about equal rows.

    Parameters
    ----------
    offsets
        Non-decreasing, ``len(items) + 1`` entries.
    parts
        Ranges wanted (at least 1).

    Returns
    -------
    list of tuple of int
        ``(first item, end item)`` of each non-empty range, covering every item once, in order.
    """
    items = len(offsets) - 1
    targets = offsets[0] + (offsets[-1] - offsets[0]) * np.arange(1, parts) / parts
    cuts = np.unique(np.r_[0, np.searchsorted(offsets[:-1], targets, side="right"), items])
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def row_chunks(p_rows: int, chunks: int = 64) -> list[tuple[int, int]]:
    """Rows ``0..p_rows`` in ``chunks`` consecutive ranges (fewer for few rows): tasks of :func:`run_parallel`.

    Parameters
    ----------
    p_rows
        Rows.
    chunks
        Ranges wanted (default 64: small enough to balance uneven rows over the threads).

    Returns
    -------
    list of tuple of int
        ``(lo, hi)`` per range, in order, covering every row once.
    """
    n_chunks = max(1, min(chunks, p_rows))
    return [(p_rows * k // n_chunks, p_rows * (k + 1) // n_chunks) for k in range(n_chunks)]


def thread_ranges(n: int) -> list[tuple[int, int]]:
    """Items ``0..n`` dealt to the :func:`thread_count` threads: consecutive non-empty ranges of about equal
    size, one task each (none for ``n = 0``)."""
    return [(a, b) for a, b in row_chunks(n, thread_count()) if b > a]


def sum_in_order(losses: np.ndarray, *parts: np.ndarray) -> tuple:
    """Per-chunk sums added up in chunk order, as one serial loop over the chunks would add them (so the
    result does not depend on the threads): the total of ``losses`` and of each ``part`` over its first axis.

    Parameters
    ----------
    losses
        One number per chunk.
    *parts
        Arrays with one row per chunk (gradients, Hessians).

    Returns
    -------
    tuple
        ``(total, part sums...)``.
    """
    total = 0.0
    for x in losses:
        total += x
    sums = []
    for part in parts:
        acc = np.zeros_like(part[0])
        for k in range(part.shape[0]):
            acc += part[k]
        sums.append(acc)
    return (total, *sums)
