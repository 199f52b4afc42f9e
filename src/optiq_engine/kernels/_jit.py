"""The one place where Numba options are decided.

``OPTIQ_NUMBA_CACHE=0`` turns the on-disk cache off (it is on by default). ``fastmath`` is always off:
the kernels compute sums that must be exact and reproducible.
"""

from __future__ import annotations

import os

import numba

__all__ = ["jit", "pjit", "prange"]

_CACHE = os.environ.get("OPTIQ_NUMBA_CACHE", "1") not in ("0", "false", "False", "")

prange = numba.prange


def jit(fn):
    """Compile a serial kernel (nopython, cached, no fastmath)."""
    return numba.njit(cache=_CACHE, nogil=True)(fn)


def pjit(fn):
    """Compile a kernel that runs ``prange`` loops over threads."""
    return numba.njit(cache=_CACHE, nogil=True, parallel=True)(fn)
