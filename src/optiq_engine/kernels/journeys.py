"""Sessions and journeys over events sorted by (group hash, time, event id) (``docs/journeys.md``).

The kernels take the sorted arrays of :func:`optiq_engine.kernels.sort.sort_by_group_time` (a group is a
run of equal hashes; :func:`source_keys` alone works on the touches in input order) and per-event flags
packed into one small integer:

* ``CONVERSION`` (1): the event's ``type`` is ``CONVERSION``;
* ``UTM`` (2): ``utm_source`` or ``utm_medium`` is non-null;
* ``TOUCH`` (4): the event is a touch (a click id, or ``UTM``);
* ``OWN_SESSION`` (8): the event carries its own ``session_id``.

The kernels are serial: each is one memory-bound pass (tens of ms for 10M events), where threads would cost
more on a first run (compilation) than they save.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .splitmix import GOLDEN, mix64

__all__ = [
    "CONVERSION",
    "OWN_SESSION",
    "TOUCH",
    "UTM",
    "count_touchpoints",
    "derived_sessions",
    "first_touches",
    "gap_sessions",
    "journey_bounds",
    "journey_positions",
    "journey_summaries",
    "source_keys",
    "touch_keys",
]

CONVERSION = 1
UTM = 2
TOUCH = 4
OWN_SESSION = 8

_SMALL = 32  # journeys with at most this many touches are deduplicated pairwise, larger ones by sorting


@jit
def gap_sessions(h, ts, timeout):
    """Gap sessions: a new one at a group's first event and after every gap greater than ``timeout``.

    Parameters
    ----------
    h : uint64[n]
        Sorted group hashes (a group is a run of equal values).
    ts : int64[n]
        Event times (us), non-decreasing within a group.
    timeout : int
        Session timeout in microseconds; a gap exactly equal stays in the session.

    Returns
    -------
    start : bool[n]
        Whether the event starts a gap session.
    first : int64[n]
        Sorted index of the first event of the event's gap session.
    """
    n = h.shape[0]
    start = np.empty(n, dtype=np.bool_)
    first = np.empty(n, dtype=np.int64)
    s = 0
    for i in range(n):
        if i == 0 or h[i] != h[i - 1] or ts[i] - ts[i - 1] > timeout:
            s = i
            start[i] = True
        else:
            start[i] = False
        first[i] = s
    return start, first


@jit
def derived_sessions(start, flags):
    """Gap sessions that need a derived id: those with an event lacking its own ``session_id``.

    Parameters
    ----------
    start : bool[n]
        From :func:`gap_sessions`.
    flags : int32[n]
        Sorted event flags (``OWN_SESSION``).

    Returns
    -------
    derived_first : int64[m]
        Sorted index of the first event of each such gap session, increasing.
    derived_index : int64[n]
        For an event without its own ``session_id``, the index of its gap session in ``derived_first``;
        ``-1`` for an event with its own.
    """
    n = start.shape[0]
    index = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    m = 0
    s = 0
    current = -1  # derived index of the current gap session, -1 until one of its events needs it
    for i in range(n):
        if start[i]:
            s = i
            current = -1
        if flags[i] & OWN_SESSION:
            index[i] = -1
        else:
            if current < 0:
                current = m
                first[m] = s
                m += 1
            index[i] = current
    return first[:m].copy(), index


@jit
def journey_bounds(h, flags):
    """Journey offsets: a journey runs from a group's first event, or the event after a conversion, up to
    and including the next ``CONVERSION`` event or the group's last event.

    Parameters
    ----------
    h : uint64[n]
        Sorted group hashes.
    flags : int32[n]
        Sorted event flags (``CONVERSION``).

    Returns
    -------
    offsets : int64[n_journeys + 1]
        Journey ``j`` is sorted events ``offsets[j]:offsets[j+1]``.
    """
    n = h.shape[0]
    starts = np.empty(n + 1, dtype=np.int64)
    m = 0
    for i in range(n):
        if i == 0 or h[i] != h[i - 1] or flags[i - 1] & CONVERSION:
            starts[m] = i
            m += 1
    starts[m] = n
    return starts[: m + 1].copy()


@jit
def journey_positions(offsets):
    """Journey index (int64) and 1-based sequence number (int32) of every sorted event."""
    n_journeys = offsets.shape[0] - 1
    n = offsets[n_journeys]
    journey = np.empty(n, dtype=np.int64)
    sequence = np.empty(n, dtype=np.int32)
    for j in range(n_journeys):
        for i in range(offsets[j], offsets[j + 1]):
            journey[i] = j
            sequence[i] = i - offsets[j] + 1
    return journey, sequence


@jit
def journey_summaries(offsets, flags):
    """First and last UTM event of every journey, and where its touches are in the list of touches.

    Parameters
    ----------
    offsets : int64[n_journeys + 1]
        From :func:`journey_bounds`.
    flags : int32[n]
        Sorted event flags (``UTM``, ``TOUCH``).

    Returns
    -------
    first_utm, last_utm : int64[n_journeys]
        Sorted index of the journey's first / last event with ``UTM``, ``-1`` when it has none.
    touch_offsets : int64[n_journeys + 1]
        The journey's touches are entries ``touch_offsets[j]:touch_offsets[j+1]`` of the touches taken in
        sorted order.
    """
    n_journeys = offsets.shape[0] - 1
    first_utm = np.full(n_journeys, -1, dtype=np.int64)
    last_utm = np.full(n_journeys, -1, dtype=np.int64)
    touch_offsets = np.empty(n_journeys + 1, dtype=np.int64)
    t = 0
    for j in range(n_journeys):
        touch_offsets[j] = t
        for i in range(offsets[j], offsets[j + 1]):
            f = flags[i]
            if f & UTM:
                if first_utm[j] < 0:
                    first_utm[j] = i
                last_utm[j] = i
            if f & TOUCH:
                t += 1
    touch_offsets[n_journeys] = t
    return first_utm, last_utm, touch_offsets


@jit
def first_touches(touch_offsets, key, check):
    """Which touches are the first of their (session, source) key within their journey.

    This is the one definition of a touchpoint: :func:`count_touchpoints` counts these flags per journey,
    and touchpoint extraction (:mod:`optiq_engine.touchpoints`) keeps the flagged touches.

    Parameters
    ----------
    touch_offsets : int64[n_journeys + 1]
        From :func:`journey_summaries`.
    key, check : uint64[n_touches]
        Two independent hashes (or both an exact code) of each touch's (session id, source), touches in
        sorted order.

    Returns
    -------
    first : bool[n_touches]
        Whether the touch's key does not occur earlier in its journey.
    n_clashes : int
        Touch pairs of one journey with equal ``key`` but different ``check`` (non-zero: the hash merged
        two keys, and ``first`` is not to be trusted).

    Notes
    -----
    Journeys with at most ``_SMALL`` touches are compared pairwise; larger ones sort a copy of their keys
    with a stable sort, so the earliest touch of a key comes first.
    """
    n_journeys = touch_offsets.shape[0] - 1
    first = np.zeros(key.shape[0], dtype=np.bool_)
    clashes = 0
    for j in range(n_journeys):
        lo = touch_offsets[j]
        hi = touch_offsets[j + 1]
        if hi - lo <= _SMALL:
            for a in range(lo, hi):
                seen = False
                for u in range(lo, a):
                    if key[u] == key[a]:
                        if check[u] != check[a]:
                            clashes += 1
                        seen = True
                        break
                first[a] = not seen
        else:
            idx = np.argsort(key[lo:hi], kind="mergesort")
            for q in range(idx.shape[0]):
                a = lo + idx[q]
                if q == 0 or key[a] != key[lo + idx[q - 1]]:
                    first[a] = True
                elif check[a] != check[lo + idx[q - 1]]:
                    clashes += 1
    return first, clashes


@jit
def count_touchpoints(touch_offsets, key, check):
    """Touchpoints per journey: its touches counted once per distinct (session, source) key.

    Parameters
    ----------
    touch_offsets : int64[n_journeys + 1]
        From :func:`journey_summaries`.
    key, check : uint64[n_touches]
        As for :func:`first_touches`.

    Returns
    -------
    count : int32[n_journeys]
        Distinct keys per journey (the touches :func:`first_touches` flags).
    n_clashes : int
        As for :func:`first_touches`.
    """
    first, clashes = first_touches(touch_offsets, key, check)
    return _count_per_journey(touch_offsets, first), clashes


@jit
def _count_per_journey(touch_offsets, first):
    n_journeys = touch_offsets.shape[0] - 1
    count = np.zeros(n_journeys, dtype=np.int32)
    for j in range(n_journeys):
        c = 0
        for a in range(touch_offsets[j], touch_offsets[j + 1]):
            if first[a]:
                c += 1
        count[j] = c
    return count


@jit
def _combine(a, b):
    """Mix two 64-bit hashes into one (order matters): a multiply-add, then splitmix64's finaliser."""
    return mix64(a * GOLDEN + b)


@jit
def source_keys(click_hash, click_valid, utm_hash):
    """Hash of every touch's source (one string hash function, one seed).

    The source is the first click id present, as (kind, value), else (``utm``, ``utm_source``,
    ``utm_medium``, ``utm_campaign``) with null a value of its own.

    Parameters
    ----------
    click_hash : tuple of 3 uint64[t]
        Hashes of ``gclid``, ``fbclid``, ``ttclid``.
    click_valid : tuple of 3 bool[t]
        Whether each click id is non-null.
    utm_hash : tuple of 3 uint64[t]
        Hashes of ``utm_source``, ``utm_medium``, ``utm_campaign`` (a null hashes to one constant).

    Returns
    -------
    uint64[t]
    """
    n = utm_hash[0].shape[0]
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        if click_valid[0][i]:
            out[i] = _combine(np.uint64(1), click_hash[0][i])
        elif click_valid[1][i]:
            out[i] = _combine(np.uint64(2), click_hash[1][i])
        elif click_valid[2][i]:
            out[i] = _combine(np.uint64(3), click_hash[2][i])
        else:
            z = _combine(np.uint64(4), utm_hash[0][i])
            z = _combine(z, utm_hash[1][i])
            out[i] = _combine(z, utm_hash[2][i])
    return out


@jit
def touch_keys(touch_pos, order, touch_rank, derived_index, touch_hash, derived_hash):
    """Two independent hashes of every touch's (session id, source), touches in sorted order.

    Parameters
    ----------
    touch_pos : int64[t]
        Sorted positions of the touches.
    order : int64[n]
        Input row of every sorted position.
    touch_rank : int64[n]
        Index of an input row among the touches in input order.
    derived_index : int64[n]
        From :func:`derived_sessions` (``-1``: the event has its own session id).
    touch_hash : uint64[t, 4]
        Per touch in input order: source hash (seed 1, seed 2) and own session id hash (seed 1, seed 2).
    derived_hash : uint64[m, 2]
        Hash (seed 1, seed 2) of each derived session id, with the string hash function of the own ids (so
        an own id equal to a derived one hashes equal).

    Returns
    -------
    key, check : uint64[t]
    """
    t = touch_pos.shape[0]
    key = np.empty(t, dtype=np.uint64)
    check = np.empty(t, dtype=np.uint64)
    for k in range(t):
        p = touch_pos[k]
        i = touch_rank[order[p]]
        d = derived_index[p]
        if d >= 0:
            s1 = derived_hash[d, 0]
            s2 = derived_hash[d, 1]
        else:
            s1 = touch_hash[i, 2]
            s2 = touch_hash[i, 3]
        key[k] = _combine(touch_hash[i, 0], s1)
        check[k] = _combine(touch_hash[i, 1], s2)
    return key, check
