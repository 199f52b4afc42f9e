"""The stages of a run: timed, with the interrupt's safe points between them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from ._interrupt import checkpoint, pause_for_tests

__all__ = ["Timed", "stage_timer"]

#: What :func:`stage_timer` returns: ``with timed("sort"): ...`` times one stage.
Timed = Callable[[str], AbstractContextManager[None]]


def stage_timer(timings: dict[str, float], on_stage: Callable[[str], None] | None = None) -> Timed:
    """A context manager factory that adds each stage's seconds to ``timings``.

    Stage boundaries are the safe points where a SIGINT/SIGTERM received under
    :func:`optiq_engine._interrupt.handle_signals` stops the run (:func:`~optiq_engine._interrupt.checkpoint`:
    before a stage starts and after it ends, never inside a kernel).

    Parameters
    ----------
    timings
        Seconds by stage name, updated in place: a stage timed twice adds up (wall-clock, ``perf_counter``).
    on_stage
        Called with the stage's name as each stage starts (a progress display); default None.

    Returns
    -------
    Timed
        ``timed(stage)``: a context manager timing one stage. It raises
        :class:`~optiq_engine._interrupt.Interrupted` at its entry or exit when a signal arrived under
        :func:`~optiq_engine._interrupt.handle_signals`.
    """

    @contextmanager
    def timed(stage: str) -> Iterator[None]:
        checkpoint()
        if on_stage is not None:
            on_stage(stage)
        pause_for_tests(stage)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0
        checkpoint()

    return timed
