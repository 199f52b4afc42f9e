"""The one place where Numba options are decided, and where compilation is measured.

``OPTIQ_NUMBA_CACHE=0`` turns the on-disk cache off (it is on by default; Numba's ``NUMBA_CACHE_DIR``
moves it). ``fastmath`` is always off: the kernels compute sums that must be exact and reproducible.

The first call of a kernel in a fresh environment compiles it (tens of seconds for all of them); later
processes load it from the cache. The cache is keyed on the sources of every kernel module
(:data:`SOURCES_DIGEST`), not only on the kernel's own file as Numba does: a kernel inlines helpers of other
modules, and after a change to a helper alone it ran its old machine code. ``optiq warmup`` (:func:`optiq_engine.warmup.warm_up`) compiles the common
paths' kernels into the cache ahead of time, e.g. when a Docker image or a CI cache is built. Compilation is timed from Numba's own ``numba:compile`` events, which
fire only when a function is really compiled (a cache hit fires none): the first one in a process is
logged once at INFO on this module's logger, each compiled function at DEBUG with its seconds, and
:func:`compile_stats` gives the totals so callers can report compile time apart from run time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numba
from numba.core import event

__all__ = ["jit", "jit_inline", "pjit", "prange", "CompileStats", "compile_stats"]

logger = logging.getLogger(__name__)

_CACHE = os.environ.get("OPTIQ_NUMBA_CACHE", "1") not in ("0", "false", "False", "")

prange = numba.prange


def sources_digest(root: Path) -> str:
    """A digest of the sources of every module with kernels under the package directory ``root``: the modules of
    ``kernels/`` and every ``_kernels.py`` (the simulators').

    Numba keys a cached kernel on its own source file alone (its modification time and size), so a kernel that
    calls or inlines a helper of another module kept its stale machine code after only the helper changed,
    silently. Every cached kernel's key also holds this digest (:func:`_keyed`): a change to any kernel source
    recompiles them all.
    """
    digest = hashlib.sha256()
    for path in sorted({*root.joinpath("kernels").glob("*.py"), *root.rglob("_kernels.py")}):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: :func:`sources_digest` of this installation, in every cached kernel's key.
SOURCES_DIGEST = sources_digest(Path(__file__).resolve().parent.parent)


def _keyed(dispatcher):
    """``dispatcher`` with :data:`SOURCES_DIGEST` joined to its cache's source stamp (which Numba stores in the
    cache index and compares on load: another digest reads as a stale cache, and the kernel is compiled and
    cached again). Without an on-disk cache, or where Numba's cache objects differ from 0.6x's, unchanged."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, SOURCES_DIGEST)
    return dispatcher


def jit(fn):
    """Compile a serial kernel (nopython, cached, no fastmath).

    Parameters
    ----------
    fn
        The kernel's Python function (compiled lazily, at its first call per signature).

    Returns
    -------
    numba.core.registry.CPUDispatcher
        ``numba.njit(cache=..., nogil=True)(fn)``; cached on disk unless ``OPTIQ_NUMBA_CACHE=0``.
    """
    return _keyed(numba.njit(cache=_CACHE, nogil=True)(fn))


def pjit(fn):
    """Compile a kernel that runs ``prange`` loops over threads (the simulator's; the engine's kernels run on
    Python threads instead, :mod:`.threads`, which compiles in a fraction of the time).

    Parameters
    ----------
    fn
        The kernel's Python function.

    Returns
    -------
    numba.core.registry.CPUDispatcher
        As :func:`jit`, with ``parallel=True``.
    """
    return _keyed(numba.njit(cache=_CACHE, nogil=True, parallel=True)(fn))


def jit_inline(fn):
    """Compile a helper that is inlined into the kernels calling it (Numba IR), not called, with ``jit``'s options.

    For the parts of a kernel's hot loops moved into helpers of their own, where a real call costs more than
    the work: in the simulator's conversion kernel (200k users, one thread) two calls per touch made it 34 %
    slower, one per touch of the memory window 16 %, one per user 5 %; inlined, the same time (within 1 %).
    """
    return _keyed(numba.njit(cache=_CACHE, nogil=True, inline="always")(fn))


@dataclass(frozen=True)
class CompileStats:
    """Numba compilation of this package's kernels in this process so far.

    Made by :func:`compile_stats`.

    Parameters
    ----------
    functions, seconds
        The counts described under Attributes (default 0).

    Attributes
    ----------
    functions
        Functions (one per signature) compiled rather than loaded from the cache, nested ones included.
    seconds
        Wall seconds spent compiling (a kernel's compile includes the functions it calls).
    """

    functions: int = 0
    seconds: float = 0.0


class _CompileListener(event.Listener):
    """Times the outermost ``numba:compile`` events of this package's functions.

    Numba compiles under its global (re-entrant) compiler lock, so events arrive one compile at a time,
    nested when a kernel's compile compiles the functions it calls.
    """

    def __init__(self) -> None:
        self.functions = 0
        self.seconds = 0.0
        self._depth = 0
        self._outer_ours = False
        self._started = 0.0
        self._announced = False

    def on_start(self, ev: event.Event) -> None:
        if self._depth == 0:
            self._outer_ours = _is_ours(ev)
            self._started = time.perf_counter()
            if self._outer_ours and not self._announced:
                self._announced = True
                where = "the cache is off: OPTIQ_NUMBA_CACHE=0" if not _CACHE else "once: cached on disk for later runs"
                logger.info(
                    "compiling Numba kernels on first use in this environment (up to a minute or two, %s; "
                    "`optiq warmup` compiles them ahead of time)...",
                    where,
                )
        self._depth += 1
        if self._outer_ours:
            self.functions += 1

    def on_end(self, ev: event.Event) -> None:
        self._depth -= 1
        if self._depth == 0 and self._outer_ours:
            seconds = time.perf_counter() - self._started
            self.seconds += seconds
            logger.debug("compiled %s in %.2f s", _name(ev), seconds)


def _is_ours(ev: event.Event) -> bool:
    func = getattr(ev.data.get("dispatcher"), "py_func", None) if isinstance(ev.data, dict) else None
    return getattr(func, "__module__", "").startswith("optiq_engine.")


def _name(ev: event.Event) -> str:
    func = getattr(ev.data.get("dispatcher"), "py_func", None) if isinstance(ev.data, dict) else None
    return f"{func.__module__}.{func.__qualname__}" if func is not None else "a function"


_listener = _CompileListener()
event.register("numba:compile", _listener)


def compile_stats() -> CompileStats:
    """Numba compilation of this package's kernels in this process so far.

    Returns
    -------
    CompileStats
        Functions compiled (not loaded from the on-disk cache) and the seconds it took; subtract two
        snapshots to get the compilation of one call.

    Examples
    --------
    >>> from optiq_engine.kernels._jit import compile_stats
    >>> before = compile_stats()
    >>> # ... run something ...
    >>> compile_stats().seconds - before.seconds  # doctest: +SKIP
    0.0
    """
    return CompileStats(functions=_listener.functions, seconds=_listener.seconds)
