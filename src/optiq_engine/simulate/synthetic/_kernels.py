"""Numba kernels of the synthetic-data simulator (numpy arrays in, numpy arrays out; no strings, no config objects).

Touch times (:func:`_place_touches`), channels (:func:`_draw_channels`, :func:`_apply_follower`), the
realised conversions with the exact expected conversions each channel adds (:func:`_simulate_conversions`,
docs/synthetic.md §4), and the bytes of the id columns (:func:`_format_fixed`, :func:`_click_keys`). The
parallel kernels split a block into :data:`_N_CHUNKS` fixed chunks, so results never depend on threads.
"""

from __future__ import annotations

import math

import numpy as np

from ...kernels._jit import jit, jit_inline, pjit, prange
from ...kernels.chunks import balanced_chunks
from ...kernels.splitmix import GOLDEN, mix64

_N_CHUNKS = 64  # work chunks of the parallel kernels (fixed, so results never depend on threads)
_INTERACTION, _ORDER = 0, 1  # kinds of the extra log-odds terms in the kernels


@jit
def _place_touches(offsets, gaps, start_fraction, window_us, min_gap):
    """Place each user's touches in ``[0, window_us)``.

    Parameters
    ----------
    offsets : int64[B + 1]
        Touch range of each user.
    gaps : float64[N]
        Gap before each touch in microseconds (the first gap of each user is not used).
    start_fraction : float64[B]
        Uniform draws in [0, 1) placing the user's span inside the period.
    window_us : int
        Length of the period.
    min_gap : float
        Gaps shorter than this are raised to it before any compression.

    Returns
    -------
    int64[N]
        Strictly increasing times per user, all in ``[0, window_us - 1]``. A span longer than the
        period (minus one microsecond per touch) is compressed by a common factor.
    """
    ts = np.empty(gaps.size, np.int64)
    room = window_us - 1
    for u in range(offsets.size - 1):
        lo, hi = offsets[u], offsets[u + 1]
        total = 0.0
        for j in range(lo + 1, hi):
            total += max(gaps[j], min_gap)
        budget = room - (hi - lo)
        scale = 1.0 if total <= budget else budget / total
        t = 0
        ts[lo] = 0
        for j in range(lo + 1, hi):
            t += max(np.int64(max(gaps[j], min_gap) * scale), 1)
            ts[j] = t
        offset = min(np.int64(start_fraction[u] * (room - t + 1)), room - t)
        for j in range(lo, hi):
            ts[j] += offset
    return ts


@pjit
def _draw_channels(offsets, available, uniforms, base_logit, drift):
    """Channel of each touch, drawn from the user's available channels.

    Parameters
    ----------
    offsets : int64[B + 1]
        Touch range of each user.
    available : bool[B, C]
        Channels that can reach the user (channel 0, direct, always can).
    uniforms : float64[N]
        One uniform draw per touch.
    base_logit, drift : float64[C]
        Touch ``j`` of ``n`` picks channel ``c`` with probability proportional to
        ``exp(base_logit[c] + drift[c] * ((j + 0.5) / n - 0.5))`` among the available channels.

    Returns
    -------
    int8[N]
        Channel codes (indices into ``CHANNELS``).
    """
    n_channels = base_logit.size
    out = np.empty(uniforms.size, np.int8)
    bounds = balanced_chunks(offsets, _N_CHUNKS)
    for chunk in prange(bounds.size - 1):
        cumulative = np.empty(n_channels)
        for u in range(bounds[chunk], bounds[chunk + 1]):
            lo = offsets[u]
            n = offsets[u + 1] - lo
            for j in range(n):
                r = (j + 0.5) / n - 0.5
                total = 0.0
                for c in range(n_channels):
                    if available[u, c]:
                        total += math.exp(base_logit[c] + drift[c] * r)
                    cumulative[c] = total
                target = uniforms[lo + j] * total
                pick = 0
                for c in range(n_channels):
                    if available[u, c]:
                        pick = c
                        if target < cumulative[c]:
                            break
                out[lo + j] = pick
    return out


@jit
def _apply_follower(offsets, channel, uniforms, lead, follower, probability):
    """Channels after the follower rule: the touch after a ``lead`` touch becomes ``follower``.

    Touch ``j + 1`` of a user (if any) is set to ``follower`` when touch ``j`` is a ``lead`` touch (after
    this rule) and ``uniforms[j + 1] < probability``. Returns a new int8[N] array.
    """
    out = channel.copy()
    for u in range(offsets.size - 1):
        for j in range(offsets[u] + 1, offsets[u + 1]):
            if out[j - 1] == lead and uniforms[j] < probability:
                out[j] = follower
    return out


@jit
def _sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))``."""
    return 1.0 / (1.0 + math.exp(-x))


@jit
def _window_start(ts, a, j, memory_us):
    """Advance ``a`` to the first touch with ``ts > ts[j] - memory_us`` (``a`` only moves forward)."""
    while ts[a] <= ts[j] - memory_us:
        a += 1
    return a


@jit
def _term_value(kind, first, second, beta, lo, hi, chan, counts, saturation):
    """The log-odds of one extra term over the stock ``chan[lo:hi]`` (``counts``: its channel counts).

    ``_INTERACTION``: ``beta`` if both ``first`` and ``second`` are in the stock, else 0.
    ``_ORDER``: ``beta * saturation[k]``, ``k`` the touches of ``second`` in the stock that come after
    a touch of ``first`` in the stock.
    """
    if kind == _INTERACTION:
        return beta if counts[first] > 0 and counts[second] > 0 else 0.0
    k = 0
    seen = False
    for i in range(lo, hi):
        if chan[i] == first:
            seen = True
        elif seen and chan[i] == second:
            k += 1
    return beta * saturation[k]


@jit
def _realise_path(lo, hi, ts, chan, base, beta, saturation, memory_us, terms, decision, converted, counts):
    """Simulate one user's conversions; mark the touches that trigger one in ``converted``.

    ``counts`` (int64[C], zeros on entry and on exit) holds the touches per channel of the stock
    ``[first, j]``: the touches after the last conversion and within ``memory_us`` of touch ``j``.
    ``saturation[k] = 1 + rho + ... + rho**(k-1)``. Touch ``j`` converts when
    ``decision[j] < sigmoid(base + sum_c beta[c] * saturation[counts[c]] + extra terms)``, the terms
    ``(kind, first, second, beta)`` as in :func:`_term_value`.
    """
    kind, term_first, term_second, term_beta = terms
    a = lo
    first = lo
    for j in range(lo, hi):
        counts[chan[j]] += 1
        a = _window_start(ts, a, j, memory_us)
        while first < a:
            counts[chan[first]] -= 1
            first += 1
        logit = base
        for c in range(beta.size):
            logit += beta[c] * saturation[counts[c]]
        for t in range(kind.size):
            logit += _term_value(
                kind[t], term_first[t], term_second[t], term_beta[t], first, j + 1, chan, counts, saturation
            )
        if decision[j] < _sigmoid(logit):
            converted[j] = True
            for i in range(first, j + 1):
                counts[chan[i]] -= 1
            first = j + 1
    for i in range(first, hi):
        counts[chan[i]] -= 1


@jit
def _expected_conversions(
    lo, hi, ts, chan, base, beta, removed, starts, n_removed, gain, saturation, memory_us, terms, scratch
):
    """Exact expected conversions of one user, as is and with each channel of ``removed`` muted.

    A dynamic programme over the state "index of the last conversion so far", run for all scenarios
    at once: row ``r = 0`` is the actual model, row ``r >= 1`` the model in which channel
    ``removed[r - 1]`` adds nothing to the log-odds: its own term and every extra term involving it
    are dropped (its touches stay decision points).
    ``prob[s - lo, r]`` is the probability that the last conversion happened at touch ``s``;
    ``free[r]`` collects "no conversion yet" and every state older than the memory window (they give
    the same hazard). At touch ``j`` the state ``s`` has the hazard of the touches ``(s, j]`` in the
    window, computed by sweeping ``i = j, j - 1, ..., a`` and adding touch ``i`` to the stock; the
    extra terms are updated as the stock grows (:func:`_with_terms`). States older than the window
    join ``free`` (:func:`_forget_states`). Row ``r`` equals row 0 until the first touch of its
    channel, ``starts[r - 1]`` (every term that involves the channel is 0 before it): it is copied
    from row 0 there and only then evolved (``starts`` ascending; :func:`_start_muted_rows`).

    Parameters
    ----------
    lo, hi : int
        The user's touch range.
    ts, chan : int64[N], int8[N]
        Touch times (strictly increasing within the user) and channels.
    base : float
        ``alpha + intercept`` of the user.
    beta : float64[C]
        True channel effects.
    removed, starts : int64[C]
        Channels to mute, one scenario each, and the index of their first touch; the first
        ``n_removed`` entries are used, in ascending order of ``starts``.
    gain, saturation : float64[max_n + 1]
        ``gain[k] = rho**k``; ``saturation[k] = gain[0] + ... + gain[k - 1]``.
    memory_us : int
        Touches older than this are forgotten.
    terms : tuple
        ``(kind int64[T], first int64[T], second int64[T], beta float64[T])``: the extra log-odds
        terms (see :func:`_term_value`).
    scratch : tuple
        ``(prob float64[>= hi - lo, C + 1], free float64[C + 1], acc float64[C + 1], kcount int64[C],
        kstamp int64[C], out float64[C + 1], term_value float64[T])``; ``out[r]`` receives the
        expected conversions of row r.
    """
    prob, free, acc, kcount, kstamp, out, term_value = scratch
    n_terms = terms[0].size
    _initial_state(prob, free, out, kstamp, hi - lo)
    rows = 1
    merged = lo
    a = lo
    for j in range(lo, hi):
        a = _window_start(ts, a, j, memory_us)
        merged = _forget_states(prob, free, rows, lo, merged, a)
        rows = _start_muted_rows(prob, free, out, starts, n_removed, rows, lo, merged, j)
        for r in range(rows):
            acc[r] = 0.0
        for t in range(n_terms):
            term_value[t] = 0.0
        logit = base
        for i in range(j, a - 1, -1):
            c = chan[i]
            if kstamp[c] != j:
                kstamp[c] = j
                kcount[c] = 0
            logit += beta[c] * gain[kcount[c]]
            kcount[c] += 1
            total = _with_terms(logit, c, j, terms, kcount, kstamp, saturation, term_value)
            p_all = _sigmoid(total)
            # the same update of prob's row s or of free, written twice: one helper taking the row view
            # prob[s] made the kernel 15 % slower (a view made per touch of the window)
            if i > a:
                s = i - 1 - lo
                acc[0] += prob[s, 0] * p_all
                prob[s, 0] *= 1.0 - p_all
                for r in range(1, rows):
                    p = _muted_hazard(
                        removed[r - 1], j, total, p_all, beta, kcount, kstamp, saturation, terms, term_value
                    )
                    acc[r] += prob[s, r] * p
                    prob[s, r] *= 1.0 - p
            else:
                acc[0] += free[0] * p_all
                free[0] *= 1.0 - p_all
                for r in range(1, rows):
                    p = _muted_hazard(
                        removed[r - 1], j, total, p_all, beta, kcount, kstamp, saturation, terms, term_value
                    )
                    acc[r] += free[r] * p
                    free[r] *= 1.0 - p
        for r in range(rows):
            prob[j - lo, r] = acc[r]
            out[r] += acc[r]


@jit_inline
def _initial_state(prob, free, out, kstamp, n_touches):
    """Row 0 before the user's first touch: no conversion yet (``free[0] = 1``), an empty stock."""
    for s in range(n_touches):
        prob[s, 0] = 0.0
    free[0] = 1.0
    out[0] = 0.0
    for c in range(kstamp.size):
        kstamp[c] = -1


@jit_inline
def _forget_states(prob, free, rows, lo, merged, a):
    """Move the states ``merged .. a - 1`` (now older than the memory window) into ``free``; returns the new ``merged``.

    Every state older than the window gives the hazard of "no conversion yet" (the stock is the window).
    """
    while merged < a:
        for r in range(rows):
            free[r] += prob[merged - lo, r]
            prob[merged - lo, r] = 0.0
        merged += 1
    return merged


@jit_inline
def _start_muted_rows(prob, free, out, starts, n_removed, rows, lo, merged, j):
    """Start the muted rows whose channel first appears at touch ``j``, as copies of row 0; returns ``rows``.

    Before its channel's first touch a muted row equals row 0 (every term involving the channel is 0).
    """
    while rows <= n_removed and starts[rows - 1] == j:
        for s in range(merged - lo, j - lo):
            prob[s, rows] = prob[s, 0]
        free[rows] = free[0]
        out[rows] = out[0]
        rows += 1
    return rows


@jit_inline
def _with_terms(logit, c, j, terms, kcount, kstamp, saturation, term_value):
    """``logit`` plus the extra terms, once a touch of channel ``c`` entered the stock of touch ``j``.

    An interaction switches on when the second of its channels enters; an order term ``first -> second``
    counts the touches of ``second`` after the earliest touch of ``first`` so far, i.e. after any touch of
    ``first`` in the stock. ``term_value`` keeps each term's current value.
    """
    kind, term_first, term_second, term_beta = terms
    total = logit
    for t in range(kind.size):
        if kind[t] == _INTERACTION:
            if (
                (c == term_first[t] or c == term_second[t])
                and kstamp[term_first[t]] == j
                and kstamp[term_second[t]] == j
            ):
                term_value[t] = term_beta[t]
        elif c == term_first[t]:
            k = kcount[term_second[t]] if kstamp[term_second[t]] == j else 0
            term_value[t] = term_beta[t] * saturation[k]
        total += term_value[t]
    return total


@jit
def _muted_hazard(d, j, logit, p_all, beta, kcount, kstamp, saturation, terms, term_value):
    """The hazard of the current stock with channel ``d``'s own term and every term involving it removed.

    ``p_all`` (the unmuted hazard) is returned as is when ``d`` is not in the stock: then none of
    those terms contributes.
    """
    if kstamp[d] != j:
        return p_all
    x = logit - beta[d] * saturation[kcount[d]]
    term_first, term_second = terms[1], terms[2]
    for t in range(term_first.size):
        if term_first[t] == d or term_second[t] == d:
            x -= term_value[t]
    return _sigmoid(x)


@pjit
def _simulate_conversions(offsets, ts, chan, base, decision, beta, rho, memory_us, terms):
    """Realised conversions, and the exact expected conversions each channel adds.

    Parameters
    ----------
    offsets : int64[B + 1]
        Touch range of each user; touches sorted by time within a user.
    ts : int64[N]
        Touch times (strictly increasing within a user).
    chan : int8[N]
        Channel codes.
    base : float64[B]
        ``alpha + intercept`` of each user.
    decision : float64[N]
        Uniform draws: touch ``j`` converts when ``decision[j] < p_j``.
    beta : float64[C]
        True channel effects.
    rho : float
        Saturation ratio in (0, 1].
    memory_us : int
        Touches older than this (relative to the decision) are forgotten.
    terms : tuple
        ``(kind int64[T], first int64[T], second int64[T], beta float64[T])``: extra log-odds terms
        (interactions and order effects, see :func:`_term_value`).

    Returns
    -------
    converted : bool[N]
        Whether touch ``j`` triggered a conversion.
    incremental : float64[B, C]
        ``E[conversions] - E[conversions | channel c muted]`` of each user, muting ``c`` dropping its
        own term and every extra term involving it; exactly 0 when the user has no touch of ``c``, or
        when ``beta[c] == 0`` and no extra term pairs ``c`` with another channel the user touched.
    """
    n_channels = beta.size
    kind, term_first, term_second, term_beta = terms
    gain, saturation = _saturation_tables(offsets, rho)
    converted = np.zeros(ts.size, np.bool_)
    incremental = np.zeros((offsets.size - 1, n_channels))
    bounds = balanced_chunks(offsets, _N_CHUNKS)
    for chunk in prange(bounds.size - 1):
        longest = 1
        for u in range(bounds[chunk], bounds[chunk + 1]):
            longest = max(longest, offsets[u + 1] - offsets[u])
        scratch = (
            np.empty((longest, n_channels + 1)),
            np.empty(n_channels + 1),
            np.empty(n_channels + 1),
            np.empty(n_channels, np.int64),
            np.empty(n_channels, np.int64),
            np.empty(n_channels + 1),
            np.empty(kind.size),
        )
        counts = np.zeros(n_channels, np.int64)
        touched = np.zeros(n_channels, np.bool_)
        listed = np.zeros(n_channels, np.bool_)
        removed = np.empty(n_channels, np.int64)
        starts = np.empty(n_channels, np.int64)
        for u in range(bounds[chunk], bounds[chunk + 1]):
            lo, hi = offsets[u], offsets[u + 1]
            _realise_path(lo, hi, ts, chan, base[u], beta, saturation, memory_us, terms, decision, converted, counts)
            touched[:] = False
            for j in range(lo, hi):
                touched[chan[j]] = True
            listed[:] = False
            n_removed = 0
            for j in range(lo, hi):
                c = chan[j]
                if not listed[c]:
                    listed[c] = True
                    needed = beta[c] != 0.0
                    for t in range(kind.size):
                        if term_beta[t] != 0.0 and (
                            (term_first[t] == c and touched[term_second[t]])
                            or (term_second[t] == c and touched[term_first[t]])
                        ):
                            needed = True
                    if needed:
                        removed[n_removed] = c
                        starts[n_removed] = j
                        n_removed += 1
            # the arrays of a Numba call packed (fmt: skip): one per line would double the function
            _expected_conversions(
                lo, hi, ts, chan, base[u], beta, removed, starts, n_removed, gain, saturation, memory_us, terms,
                scratch,
            )  # fmt: skip
            out = scratch[5]
            for r in range(n_removed):
                incremental[u, removed[r]] = out[0] - out[r + 1]
    return converted, incremental


@jit
def _saturation_tables(offsets, rho):
    """``gain[k] = rho**k`` and ``saturation[k] = gain[0] + ... + gain[k - 1]`` up to the longest user's touches."""
    max_touches = 0
    for u in range(offsets.size - 1):
        max_touches = max(max_touches, offsets[u + 1] - offsets[u])
    gain = np.empty(max_touches + 1)
    saturation = np.empty(max_touches + 1)
    acc = 0.0
    for k in range(max_touches + 1):
        gain[k] = rho**k
        saturation[k] = acc
        acc += gain[k]
    return gain, saturation


@jit
def _splitmix64(x):
    """One SplitMix64 step from a uint64 (a fixed, well-mixed hash): the engine's finaliser of ``x + GOLDEN``."""
    return mix64(x + GOLDEN)


@jit
def _click_keys(numbers, key):
    """``splitmix64(number ^ key)`` of each (uint64) touchpoint number."""
    out = np.empty(numbers.size, np.uint64)
    for i in range(numbers.size):
        out[i] = _splitmix64(np.uint64(numbers[i]) ^ key)
    return out


@pjit
def _format_fixed(prefix, numbers, width, base):
    """UTF-8 bytes of ``prefix + number`` zero-padded to ``width`` digits in ``base`` (10 or 16).

    Returns uint8[n * (len(prefix) + width)]; row ``i`` starts at ``i * (len(prefix) + width)``.
    """
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    size = prefix.size + width
    out = np.empty(numbers.size * size, np.uint8)
    for i in prange(numbers.size):
        row = i * size
        out[row : row + prefix.size] = prefix
        x = np.uint64(numbers[i])
        for d in range(size - 1, prefix.size - 1, -1):
            out[row + d] = digits[x % np.uint64(base)]
            x //= np.uint64(base)
    return out
