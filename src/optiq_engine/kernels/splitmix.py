"""SplitMix64's finaliser: the one 64-bit mix behind the engine's hashes and counter-based draws.

``z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31`` modulo
2**64 (Vigna's SplitMix64 applies it to ``state += GOLDEN``): a bijection of uint64 with good avalanche.
:func:`finalise` is written with operators only, so one definition serves numpy arrays (mixed in place, for
frame-level code: :func:`optiq_engine.grouping.splitmix`) and, compiled as :func:`mix64`, scalars inside
kernels.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["GOLDEN", "finalise", "mix64", "shuffle"]

#: SplitMix64's increment, 2**64 / golden ratio (odd): the step of counter-based streams.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def finalise(z):
    """SplitMix64's finaliser of a uint64 array, **in place** (and returned); compiled (:func:`mix64`), of a
    uint64 scalar.

    Parameters
    ----------
    z
        A uint64 array (overwritten) or scalar; arithmetic wraps modulo 2**64 (NumPy warns of the overflow
        outside ``np.errstate(over="ignore")``).

    Returns
    -------
    numpy.ndarray or numpy.uint64
        ``z`` mixed: a bijection of the 64-bit integers.
    """
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


#: :func:`finalise` of one uint64, compiled for the kernels.
mix64 = jit(finalise)


@jit
def shuffle(order, d, key, draws):
    """Fisher-Yates shuffle of ``order[:d]`` in place, from the counter-based stream ``mix64(key + n * GOLDEN)``
    for ``n = draws, draws + 1, ...`` (a sampled Shapley value's random orderings, keyed by path).

    Returns
    -------
    int
        The next draw number (``draws + d - 1``).
    """
    for i in range(d - 1, 0, -1):
        r = mix64(key + np.uint64(draws) * GOLDEN)
        draws += 1
        j = np.int64(r % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]
    return draws
