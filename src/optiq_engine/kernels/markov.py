"""Transition counts of the order-k Markov chain over path tables (docs/data_driven.md §3)."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["START", "CONVERSION", "NULL", "transition_entries", "entry_weights", "order1_counts", "dense_transitions"]

# State keys: channel tuples are base-(C+1) numbers of (code + 1) digits, most recent last; the empty
# tuple is START. Absorbing states are negative.
START, CONVERSION, NULL = 0, -1, -2
# Entry kinds: which of a path's counts an entry carries.
BOTH, CONV_ONLY, NULL_ONLY = 0, 1, 2


@jit
def transition_entries(offsets, codes, order, n_codes):
    """Every transition of every path, once per path (weights are applied by the caller).

    Parameters
    ----------
    offsets, codes : int64[P + 1], int32[...]
        The path table's paths (CSR of channel codes, each path non-empty).
    order : int
        Markov order k (states are the last up to k channels).
    n_codes : int
        Number of channel codes C (keys are base C + 1).

    Returns
    -------
    src, dst : int64[E]
        State keys of each transition (``dst`` may be ``CONVERSION`` or ``NULL``).
    path : int64[E]
        The path row it comes from.
    kind : int8[E]
        ``BOTH`` (weight conversions + nulls), ``CONV_ONLY`` or ``NULL_ONLY``.
    """
    p_rows = offsets.shape[0] - 1
    n_entries = offsets[p_rows] + 2 * p_rows
    src = np.empty(n_entries, dtype=np.int64)
    dst = np.empty(n_entries, dtype=np.int64)
    path = np.empty(n_entries, dtype=np.int64)
    kind = np.empty(n_entries, dtype=np.int8)
    base = n_codes + 1
    modulus = 1
    for _ in range(order):
        modulus *= base
    e = 0
    for p in range(p_rows):
        state = START
        for i in range(offsets[p], offsets[p + 1]):
            nxt = (state * base + codes[i] + 1) % modulus
            src[e] = state
            dst[e] = nxt
            path[e] = p
            kind[e] = BOTH
            e += 1
            state = nxt
        for target, k in ((CONVERSION, CONV_ONLY), (NULL, NULL_ONLY)):
            src[e] = state
            dst[e] = target
            path[e] = p
            kind[e] = k
            e += 1
    return src, dst, path, kind


@jit
def entry_weights(path, kind, conversions, nulls):
    """Weight of every transition entry given the path rows' conversions and nulls."""
    w = np.empty(path.shape[0], dtype=np.float64)
    for e in range(path.shape[0]):
        p = path[e]
        if kind[e] == BOTH:
            w[e] = conversions[p] + nulls[p]
        elif kind[e] == CONV_ONLY:
            w[e] = conversions[p]
        else:
            w[e] = nulls[p]
    return w


@jit
def order1_counts(offsets, codes, conversions, nulls, n_codes):
    """Order-1 transition counts as a dense ``[C + 1, C + 3]`` matrix, straight from the paths.

    Row 0 is START, row ``c + 1`` channel ``c``; columns ``0..C`` are the same states, ``C + 1``
    CONVERSION and ``C + 2`` NULL.
    """
    counts = np.zeros((n_codes + 1, n_codes + 3), dtype=np.float64)
    for p in range(offsets.shape[0] - 1):
        both = conversions[p] + nulls[p]
        state = 0
        for i in range(offsets[p], offsets[p + 1]):
            nxt = codes[i] + 1
            counts[state, nxt] += both
            state = nxt
        counts[state, n_codes + 1] += conversions[p]
        counts[state, n_codes + 2] += nulls[p]
    return counts


@jit
def dense_transitions(offsets, codes, conversions, nulls, order, n_codes, present_only):
    """Order-k transition counts as a dense ``[S, S + 2]`` matrix over every possible state key, straight from
    the paths (``S = (C + 1) ** k``; columns ``0..S-1`` are the next state's key, ``S`` CONVERSION, ``S + 1``
    NULL). Each path adds ``conversions + nulls`` to its transitions and its counts to its ending, in path
    order (the sums of :func:`entry_weights` per transition, added in the same order).

    With ``present_only``, the counts are 1.0 wherever a path of the table has the transition (whatever its
    counts; the chain's transitions), else 0.
    """
    base = n_codes + 1
    s = 1
    for _ in range(order):
        s *= base
    out = np.zeros((s, s + 2), dtype=np.float64)
    for p in range(offsets.shape[0] - 1):
        both = 1.0 if present_only else conversions[p] + nulls[p]
        state = START
        for i in range(offsets[p], offsets[p + 1]):
            nxt = (state * base + codes[i] + 1) % s
            if present_only:
                out[state, nxt] = 1.0
            else:
                out[state, nxt] += both
            state = nxt
        if present_only:
            out[state, s] = 1.0
            out[state, s + 1] = 1.0
        else:
            out[state, s] += conversions[p]
            out[state, s + 1] += nulls[p]
    return out
