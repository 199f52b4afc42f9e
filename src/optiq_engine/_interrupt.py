"""Stop a long command cleanly on SIGINT or SIGTERM: the signal sets a flag, safe points raise.

Python's default SIGINT handler raises ``KeyboardInterrupt`` at the next bytecode the main thread runs,
which may be inside Numba's dispatcher (loading a cached kernel, boxing a result) while its worker
threads still run: 32 Ctrl-C on ``optiq attribute`` at 7.5M touchpoints gave 5 segfaults and 4
``SystemError: _numba_unpickle returned a result with an exception set``. SIGTERM's default action
ends the process at once, with a half-written staging folder and an ``"EngineRun"`` row left RUNNING.

While :func:`handle_signals` is active (the ``optiq`` commands that compute: ``attribute``, ``run``,
``demo``), SIGINT and SIGTERM only record that they arrived. :func:`checkpoint`, called at safe points
between stages (every stage of :func:`optiq_engine.stages.stage_timer`, the batch job's stages, before
results are published), then raises :class:`Interrupted` in plain Python code: ``with`` blocks clean up
(the staging folder of :class:`optiq_engine.io.parquet.ResultWriter`, the database transaction of
``optiq run``, which records the run FAILED) and the command exits with ``128 + signal`` (130 for
SIGINT, 143 for SIGTERM). A second signal ends the process at once, with that exit code and without
cleaning up.

Outside :func:`handle_signals` (the library used from Python) nothing changes: :func:`checkpoint` is a
no-op, and Ctrl-C behaves as Python's default.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "checkpoint", "handle_signals", "pause_for_tests", "PAUSE_VARIABLE"]

#: Test hook: ``<stage>:<seconds>`` makes :func:`pause_for_tests` sleep that long when the stage starts
#: (until a signal arrives), after writing ``optiq test pause: <stage>`` to stderr.
PAUSE_VARIABLE = "OPTIQ_TEST_PAUSE_STAGE"

_received: int | None = None


class Interrupted(KeyboardInterrupt):
    """The command was stopped by a signal, at a safe point (or after it had finished its work).

    A ``KeyboardInterrupt``: ``except Exception`` does not catch it, ``with`` blocks clean up on the way.

    Parameters
    ----------
    signum
        The signal received (``signal.SIGINT`` or ``signal.SIGTERM``); it names the signal in the message.
    finished
        True when the signal arrived after the last safe point (default False): the message then says the
        work was finished and written.

    Attributes
    ----------
    signum
        The signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
    finished
        True when the signal arrived after the last safe point: the work was done (and written) anyway.
    """

    def __init__(self, signum: int, *, finished: bool = False) -> None:
        self.signum = signum
        self.finished = finished
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} arrived after the work was finished and written"
            if finished
            else f"stopped by {name} at a safe point: nothing half-written (previous results are intact)"
        )

    @property
    def exit_code(self) -> int:
        """``128 + signal``: 130 for SIGINT, 143 for SIGTERM (what a shell reports for a killed process)."""
        return 128 + self.signum


def checkpoint() -> None:
    """Raise :class:`Interrupted` if SIGINT or SIGTERM arrived under :func:`handle_signals`; else nothing.

    Call it only where raising is safe: in Python code between compiled kernels, outside a write that
    must finish (raising inside a database transaction is fine: it rolls back).
    """
    if _received is not None:
        raise Interrupted(_received)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:  # a second signal: the user insists
        os.write(2, f"\n{signal.Signals(signum).name} again: exiting now, without cleaning up\n".encode())
        os._exit(128 + signum)
    _received = signum
    os.write(
        2,
        f"\n{signal.Signals(signum).name}: stopping at the next safe point (send it again to exit at once)\n".encode(),
    )


@contextmanager
def handle_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Defer ``signals`` to :func:`checkpoint` while the block runs; the previous handlers afterwards.

    A signal that arrives after the block's last safe point raises :class:`Interrupted` (``finished=True``)
    when the block ends; a ``KeyboardInterrupt`` another library raised for the signal becomes
    :class:`Interrupted` too. Outside the main thread (where handlers cannot be installed) the block runs
    unchanged.

    Parameters
    ----------
    signals
        The signals to defer (default SIGINT and SIGTERM); their previous handlers are restored when the
        block ends, however it ends.

    Yields
    ------
    None
        Control, once, for the block.

    Raises
    ------
    Interrupted
        When the block ends after one of ``signals`` arrived: ``finished=True`` if it arrived after the last
        :func:`checkpoint`; a ``KeyboardInterrupt`` raised by a library for the signal is re-raised as
        :class:`Interrupted`. A ``KeyboardInterrupt`` with no signal recorded propagates unchanged.
    """
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    _received = None
    for s in signals:
        signal.signal(s, _on_signal)
    try:
        try:
            yield
        except Interrupted:
            raise
        except KeyboardInterrupt as exc:
            if _received is None:
                raise
            # A library that watches SIGINT itself (polars cancels a running query) raised it in plain
            # Python code, after our handler ran: reported like the checkpoints' interruption.
            raise Interrupted(_received) from exc
        if _received is not None:
            raise Interrupted(_received, finished=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received = None


def pause_for_tests(stage: str) -> None:
    """Test hook: sleep in ``stage`` as :data:`PAUSE_VARIABLE` asks (until a signal arrives); else nothing.

    Parameters
    ----------
    stage
        The stage starting; the pause happens only when it is the ``<stage>`` of :data:`PAUSE_VARIABLE`
        (``<stage>:<seconds>``).
    """
    wanted = os.environ.get(PAUSE_VARIABLE)
    if not wanted:
        return
    name, _, seconds = wanted.rpartition(":")
    if name != stage:
        return
    os.write(2, f"optiq test pause: {stage}\n".encode())
    deadline = time.monotonic() + float(seconds)
    while _received is None and time.monotonic() < deadline:
        time.sleep(0.05)
