"""Kernels on Python threads (``kernels.threads``): results in task order, and a forked child that inherits a
pool without its threads still runs (it starts its own)."""

from __future__ import annotations

import multiprocessing

import numpy as np

from optiq_engine.kernels.threads import row_chunks, run_parallel


def _square(x: int) -> int:
    return x * x


def _in_child(queue) -> None:  # type: ignore[no-untyped-def]
    queue.put(run_parallel(_square, [(i,) for i in range(8)]))


def test_results_come_back_in_task_order_and_chunks_cover_every_row() -> None:
    assert run_parallel(_square, [(i,) for i in range(50)]) == [i * i for i in range(50)]
    chunks = row_chunks(1000, 64)
    assert np.concatenate([np.arange(a, b) for a, b in chunks]).tolist() == list(range(1000))
    assert row_chunks(3, 64) == [(0, 1), (1, 2), (2, 3)] and row_chunks(0) == [(0, 0)]


def test_a_forked_child_runs_on_pools_of_its_own() -> None:
    run_parallel(_square, [(i,) for i in range(16)])  # the parent's pool exists now, its threads idle
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == [i * i for i in range(8)]
