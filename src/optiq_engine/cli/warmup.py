"""``optiq warmup``: compile the Numba kernels ahead of a first real run."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from .output import console, err, new_table, stages


def warmup(
    data_driven: Annotated[
        bool,
        typer.Option(
            "--data-driven", help="Also compile the data-driven fits (MARKOV orders 1 and 2, SHAPLEY, DATA_DRIVEN)."
        ),
    ] = False,
) -> None:
    """Compile the Numba kernels of the common paths into the on-disk cache, and print each stage's seconds.

    Runs heuristic attribution (with and without path rules), journeys and touchpoint extraction on tiny
    inputs, so that a first real run in this environment compiles nothing: run it once when building a
    Docker image, a CI cache or a Spark worker's environment (NUMBA_CACHE_DIR moves the cache; the same
    CPU model reuses it). A second warmup is quick: everything loads from the cache.
    """
    from ..kernels._jit import _CACHE
    from ..warmup import warm_up

    t0 = time.perf_counter()
    with stages("warming up") as show:
        done = warm_up(data_driven=data_driven, on_stage=show)
    table = new_table(
        "optiq warmup: Numba kernels",
        "stage",
        "seconds",
        "of which compiling",
        "functions compiled",
        numbers=["seconds", "of which compiling", "functions compiled"],
    )
    for stage in done:
        table.add_row(stage.name, f"{stage.seconds:.2f}", f"{stage.compile_seconds:.2f}", f"{stage.functions:,}")
    console.print(table)
    compiled = sum(s.compile_seconds for s in done)
    console.print(
        f"warmup {time.perf_counter() - t0:.2f}s, of which compiling {compiled:.2f}s "
        f"({sum(s.functions for s in done):,} functions; 0: the cache was already warm)",
        soft_wrap=True,
    )
    if not _CACHE:
        err.print("warning: OPTIQ_NUMBA_CACHE=0: the on-disk cache is off, so nothing was kept for later processes")
