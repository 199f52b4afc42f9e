"""Reference data-driven attribution: MARKOV, SHAPLEY and the DATA_DRIVEN decomposition.

Written from docs/contract.md §1, §2, §6 as completed by docs/data_driven.md (authoritative where they
differ), and docs/attribution.md for the value split. Slow and literal on purpose: property tests
compare the fast engine (Numba / SciPy) against this module on small cases.

- §1 journeys fitted on: :func:`fitting_journeys` (windows reused from ``tests/reference/attribution.py``).
- §2 path transforms and the path table: :func:`transform_path`, :func:`path_table`.
- §3 MARKOV: :func:`markov_dense` (dense ``numpy.linalg.solve`` of the absorbing chain) and
  :func:`markov_enumerate` (the walk's distribution iterated step by step, a second computation).
- §4 SHAPLEY: :func:`shapley_permutations` (average over all ``n!`` orderings) and
  :func:`shapley_subsets` (the subset sum of §4, for a few more players).
- §5 crediting: :func:`credit_journey` with the multipliers of :func:`balance_scale`
  (``tests/reference/balance.py``), and the whole pipeline :func:`data_driven_reference`.
- §6 DATA_DRIVEN decomposition of one journey: :func:`logistic_shapley` (the logistic fit itself is not
  part of this reference).

Conventions. Channels are strings, paths are tuples of channels, counts are ints. Markov states are
tuples of channels (``("a",)`` at order 1) or one of the strings ``"START"``, ``"CONVERSION"``,
``"NULL"``. Where docs/data_driven.md leaves a case open, the most literal reading is taken and marked
``# AMBIGUITY:`` in the code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tests.reference.attribution import (
    LINEAR,
    MICROS_PER_DAY,
    _group_key,
    _touchpoint_order,
    _value,
    attribute_reference,
    split_value,
)
from tests.reference.balance import balance_reference

MARKOV = "MARKOV"
SHAPLEY = "SHAPLEY"

START = "START"
CONVERSION = "CONVERSION"
NULL = "NULL"

TRANSFORMS = ("exposure", "unique", "first", "frequency")
SELF_TRANSITIONS = ("keep", "drop")
CHARACTERISTICS = ("rate", "conversions")

#: Orderings are enumerated one by one: beyond this many players it takes too long.
MAX_PERMUTATION_PLAYERS = 8
#: Subsets are enumerated one by one (2^n per player).
MAX_SUBSET_PLAYERS = 16

Row = dict[str, Any]
Path = tuple[str, ...]
State = tuple[str, ...] | str


# --------------------------------------------------------------------------------------
# §1 Journeys that the models are fitted on
# --------------------------------------------------------------------------------------


def fitting_journeys(
    touchpoints: list[dict],
    conversions: list[dict],
    *,
    lookback_us: int,
    reset_after_conversion: bool = True,
    group_by: tuple[str, ...] = ("anon_id",),
) -> list[dict]:
    """The converting and non-converting journeys of docs/data_driven.md §1.

    Converting journeys: one per conversion with at least one eligible touchpoint (docs/contract.md §2 windows,
    computed by ``attribute_reference`` of the heuristic reference), its eligible touchpoints in
    position order, value = the conversion's ``value_micros``.

    Non-converting journeys: one per group whose *tail* is not empty. The tail is the group's
    touchpoints with ``t > T_last`` (``T_last`` the time of the group's last conversion; every
    touchpoint if it has none), restricted to ``t > t_last - lookback`` where ``t_last`` is the time
    of the group's last touchpoint.

    Each journey is a dict: ``conversion_id`` (None for a tail), ``touchpoint_ids`` and ``channels``
    (position order), ``converted``, ``value_micros`` (0 for a tail) and ``group`` (the group key).
    Order: converting journeys in the order of ``conversions``, then tails by the group's first
    appearance in ``touchpoints``.
    """
    journeys: list[dict] = []

    # Converting journeys: the eligible touchpoints of each conversion are exactly the LINEAR links
    # of the heuristic reference (one link per eligible touchpoint, positions 1..n).
    links, _unattributed = attribute_reference(
        touchpoints,
        conversions,
        models=[(LINEAR, {})],
        lookback_us=lookback_us,
        reset_after_conversion=reset_after_conversion,
        group_by=group_by,
    )
    links_by_conversion: dict[str, list[dict]] = {}
    for link in links:
        links_by_conversion.setdefault(link["conversion_id"], []).append(link)
    for conv in conversions:
        conversion_links = links_by_conversion.get(conv["conversion_id"], [])
        if not conversion_links:
            continue  # no eligible touchpoint: not fitted on (it is unattributed)
        conversion_links.sort(key=lambda link: link["position"])
        journeys.append(
            {
                "conversion_id": conv["conversion_id"],
                "touchpoint_ids": [link["touchpoint_id"] for link in conversion_links],
                "channels": [link["channel"] for link in conversion_links],
                "converted": True,
                "value_micros": _value(conv),
                "group": _group_key(conv, group_by),
            }
        )

    # Non-converting journeys: the tail of every group that has touchpoints.
    group_keys: list[tuple] = []
    for tp in touchpoints:
        key = _group_key(tp, group_by)
        if key not in group_keys:
            group_keys.append(key)

    for key in group_keys:
        group_touchpoints = [tp for tp in touchpoints if _group_key(tp, group_by) == key]
        group_conversions = [cv for cv in conversions if _group_key(cv, group_by) == key]
        t_last_touch = max(tp["occurred_at"] for tp in group_touchpoints)
        t_last_conversion = max((cv["occurred_at"] for cv in group_conversions), default=None)

        tail = []
        for tp in group_touchpoints:
            t = tp["occurred_at"]
            # "strictly after its last conversion": a touchpoint at exactly T_last belongs to that
            # conversion (docs/attribution.md), so it is not in the tail.
            if t_last_conversion is not None and not (t > t_last_conversion):
                continue
            if not (t > t_last_touch - lookback_us):
                continue
            tail.append(tp)
        if not tail:
            continue
        tail.sort(key=_touchpoint_order)
        journeys.append(
            {
                "conversion_id": None,
                "touchpoint_ids": [tp["touchpoint_id"] for tp in tail],
                "channels": [tp["channel"] for tp in tail],
                "converted": False,
                "value_micros": 0,
                "group": key,
            }
        )
    return journeys


# --------------------------------------------------------------------------------------
# §2 Path transforms and the path table
# --------------------------------------------------------------------------------------


def transform_path(
    channels: Iterable[str],
    transform: str = "exposure",
    *,
    remove_direct_if_not_all: bool = False,
    direct: tuple[str, ...] = ("direct",),
) -> Path:
    """The transformed path of a journey's channels (docs/data_driven.md §2).

    ``remove_direct_if_not_all`` is applied first: the direct touches are dropped unless every touch
    is direct. Then ``exposure`` collapses consecutive repeats, ``unique`` keeps each channel at its
    first occurrence, ``first`` keeps the first touch, ``frequency`` keeps every touch.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {TRANSFORMS}")
    path = list(channels)

    if remove_direct_if_not_all:
        every_touch_direct = all(channel in direct for channel in path)
        if not every_touch_direct:
            path = [channel for channel in path if channel not in direct]

    if transform == "frequency":
        return tuple(path)
    if transform == "first":
        return tuple(path[:1])
    if transform == "exposure":
        collapsed: list[str] = []
        for channel in path:
            if not collapsed or collapsed[-1] != channel:
                collapsed.append(channel)
        return tuple(collapsed)
    # unique
    seen: list[str] = []
    for channel in path:
        if channel not in seen:
            seen.append(channel)
    return tuple(seen)


def path_table(
    journeys: list[dict],
    *,
    transform: str = "exposure",
    remove_direct_if_not_all: bool = False,
    direct: tuple[str, ...] = ("direct",),
) -> dict[Path, tuple[int, int, int]]:
    """Transformed path -> ``(conversions, nulls, value_micros)`` (docs/data_driven.md §2).

    ``conversions`` counts converting journeys, ``nulls`` non-converting ones, ``value_micros`` sums
    the converting journeys' values. Empty transformed paths are left out.
    """
    table: dict[Path, tuple[int, int, int]] = {}
    for journey in journeys:
        path = transform_path(
            journey["channels"],
            transform,
            remove_direct_if_not_all=remove_direct_if_not_all,
            direct=direct,
        )
        if not path:
            continue
        conversions, nulls, value = table.get(path, (0, 0, 0))
        if journey["converted"]:
            conversions += 1
            value += journey["value_micros"]
        else:
            nulls += 1
        table[path] = (conversions, nulls, value)
    return table


def _check_paths(paths: dict[Path, tuple]) -> None:
    for path, row in paths.items():
        if len(path) == 0:
            raise ValueError("a fitted path must have at least one channel")
        if row[0] < 0 or row[1] < 0:
            raise ValueError(f"negative count in path row {path!r}: {row!r}")


# --------------------------------------------------------------------------------------
# §3 MARKOV
# --------------------------------------------------------------------------------------


def markov_state(path: Path, i: int, order: int) -> tuple[str, ...]:
    """State after step ``i`` (0-based) of ``path``: the last up to ``order`` channels."""
    first = max(0, i - order + 1)
    return tuple(path[first : i + 1])


def markov_transition_counts(
    paths: dict[Path, tuple], order: int = 1, self_transitions: str = "keep"
) -> dict[tuple[State, State], int]:
    """Transition counts of docs/data_driven.md §3; only positive counts are listed.

    A row with ``conversions = a``, ``nulls = b`` adds ``a + b`` to ``START -> s_1`` and to each
    ``s_i -> s_(i+1)``, ``a`` to ``s_m -> CONVERSION`` and ``b`` to ``s_m -> NULL``. With
    ``self_transitions="drop"`` the ``s -> s`` counts are removed.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if self_transitions not in SELF_TRANSITIONS:
        raise ValueError(f"self_transitions must be one of {SELF_TRANSITIONS}, got {self_transitions!r}")
    _check_paths(paths)

    counts: dict[tuple[State, State], int] = {}

    def add(from_state: State, to_state: State, count: int) -> None:
        if count > 0:
            counts[(from_state, to_state)] = counts.get((from_state, to_state), 0) + count

    for path, row in paths.items():
        conversions, nulls = int(row[0]), int(row[1])
        states = [markov_state(path, i, order) for i in range(len(path))]
        add(START, states[0], conversions + nulls)
        for i in range(len(states) - 1):
            add(states[i], states[i + 1], conversions + nulls)
        add(states[-1], CONVERSION, conversions)
        add(states[-1], NULL, nulls)

    if self_transitions == "drop":
        # AMBIGUITY: the docs say self-transitions are produced "only [by] frequency paths at order 1",
        # but a frequency path also makes them at higher orders (a a a at order 2: (a, a) -> (a, a)).
        # Taken: "drop" removes every s -> s, at any order (it still changes no absorption probability).
        # AMBIGUITY: the docs do not say whether the reported transition counts are before or after the
        # drop. Taken: after (the counts the probabilities are normalised from).
        counts = {(a, b): n for (a, b), n in counts.items() if a != b}
    return counts


def _shares(effects: dict[str, float]) -> dict[str, float]:
    """Effects normalised to sum 1 (negative effects, and effects within 1e-12 of 0, count as 0)."""
    # Rounding noise: a game whose values all cancel (rate: v({d}) = v({a, b, c, e}) = 2/3, v(N) = 0) gives
    # Shapley values of 1e-17 that would otherwise be normalised into shares (Hypothesis found one, 2026-12-07);
    # the engine counts them as 0 (docs/data_driven.md §5, "Rounding noise").
    effects = {channel: effect if abs(effect) > 1e-12 else 0.0 for channel, effect in effects.items()}
    total = 0.0
    for effect in effects.values():
        total += max(effect, 0.0)
    if total <= 0.0:
        # AMBIGUITY: the docs normalise removal effects / max(phi, 0) "to sum 1" but do not say what
        # the shares are when every one is 0 (no conversion at all, P = 0, or every phi <= 0). Taken:
        # every share 0 (then every journey falls back to LINEAR, §5).
        return {channel: 0.0 for channel in effects}
    return {channel: max(effect, 0.0) / total for channel, effect in effects.items()}


def _markov_result(
    p_conversion: float,
    p_removed: dict[str, float],
    transitions: dict[tuple[State, State], int],
) -> dict:
    removal_effect: dict[str, float] = {}
    for channel, p_minus in p_removed.items():
        # "removal_effect_c = 1 - P_-c / P (0 when P = 0)"
        removal_effect[channel] = 0.0 if p_conversion == 0.0 else 1.0 - p_minus / p_conversion
    return {
        "p_conversion": p_conversion,
        "p_removed": p_removed,
        "removal_effect": removal_effect,
        "share": _shares(removal_effect),
        "transitions": transitions,
    }


def markov_dense(
    paths: dict[Path, tuple],
    order: int = 1,
    self_transitions: str = "keep",
) -> dict:
    """MARKOV(order) fit by a dense solve of the absorbing chain (docs/data_driven.md §3).

    ``paths`` maps a path to ``(conversions, nulls)`` or ``(conversions, nulls, value_micros)``.

    The transient states are START and every channel tuple; ``Q[i, j]`` is the probability of
    ``i -> j`` and ``r[i]`` that of ``i -> CONVERSION`` (counts over the row's total). ``x = (I - Q)^-1 r``
    and ``P = x[START]``. Removing channel ``c`` redirects every transition into a state whose tuple
    contains ``c`` to NULL (probabilities are not renormalised); ``removal_effect_c = 1 - P_-c / P``.

    Returns ``p_conversion``, ``p_removed`` {channel: P_-c}, ``removal_effect``, ``share`` (removal
    effects normalised to sum 1) and ``transitions`` {(from, to): count}.
    """
    transitions = markov_transition_counts(paths, order, self_transitions)

    channel_states: set[tuple[str, ...]] = set()
    for from_state, to_state in transitions:
        for state in (from_state, to_state):
            if isinstance(state, tuple):
                channel_states.add(state)
    transient: list[State] = [START, *sorted(channel_states, key=lambda s: (len(s), s))]
    index = {state: i for i, state in enumerate(transient)}
    channels = sorted({channel for state in channel_states for channel in state})

    row_total = [0] * len(transient)
    for (from_state, _to_state), count in transitions.items():
        row_total[index[from_state]] += count

    def absorption(removed: str | None) -> float:
        n = len(transient)
        q = np.zeros((n, n))
        r = np.zeros(n)
        for (from_state, to_state), count in transitions.items():
            i = index[from_state]
            probability = count / row_total[i]
            if to_state == CONVERSION:
                r[i] += probability
            elif to_state == NULL:
                pass  # absorbed in NULL
            elif removed is not None and removed in to_state:
                pass  # redirected to NULL
            else:
                q[i, index[to_state]] += probability
        x = np.linalg.solve(np.eye(n) - q, r)
        return float(x[index[START]])

    p_conversion = absorption(None)
    p_removed = {channel: absorption(channel) for channel in channels}
    return _markov_result(p_conversion, p_removed, transitions)


def markov_enumerate(
    paths: dict[Path, tuple],
    order: int = 1,
    self_transitions: str = "keep",
    *,
    max_steps: int = 1_000_000,
    tolerance: float = 1e-15,
) -> dict:
    """MARKOV(order) by walking the chain: a second, independent computation of §3.

    The transition counts are recounted here from each path's state sequence
    ``START, s_1, ..., s_m, (CONVERSION | NULL)``. The distribution of the walk started in START is
    then pushed one step at a time; the mass reaching CONVERSION is summed until the mass still in
    transient states is below ``tolerance``. Removal of ``c``: any step into a state containing ``c``
    goes to NULL. Only meant for tiny tables (a few states).
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if self_transitions not in SELF_TRANSITIONS:
        raise ValueError(f"self_transitions must be one of {SELF_TRANSITIONS}, got {self_transitions!r}")
    _check_paths(paths)

    # Recount the transitions, walking each path's own state sequence.
    counts: dict[tuple[State, State], int] = {}
    for path, row in paths.items():
        conversions, nulls = int(row[0]), int(row[1])
        walk: list[State] = [START]
        for i in range(len(path)):
            walk.append(tuple(path[: i + 1][-order:]))
        for from_state, to_state in zip(walk[:-1], walk[1:], strict=True):
            counts[(from_state, to_state)] = counts.get((from_state, to_state), 0) + conversions + nulls
        counts[(walk[-1], CONVERSION)] = counts.get((walk[-1], CONVERSION), 0) + conversions
        counts[(walk[-1], NULL)] = counts.get((walk[-1], NULL), 0) + nulls
    counts = {key: n for key, n in counts.items() if n > 0}
    if self_transitions == "drop":
        counts = {(a, b): n for (a, b), n in counts.items() if a != b}

    totals: dict[State, int] = {}
    for (from_state, _), n in counts.items():
        totals[from_state] = totals.get(from_state, 0) + n
    outgoing: dict[State, list[tuple[State, float]]] = {}
    for (from_state, to_state), n in counts.items():
        outgoing.setdefault(from_state, []).append((to_state, n / totals[from_state]))

    channels: set[str] = set()
    for from_state, to_state in counts:
        for state in (from_state, to_state):
            if isinstance(state, tuple):
                channels.update(state)

    def absorbed_in_conversion(removed: str | None) -> float:
        distribution: dict[State, float] = {START: 1.0}
        converted = 0.0
        for _step in range(max_steps):
            if sum(distribution.values()) < tolerance:
                return converted
            following: dict[State, float] = {}
            for state, mass in distribution.items():
                for to_state, probability in outgoing.get(state, []):
                    if to_state == CONVERSION:
                        converted += mass * probability
                    elif to_state == NULL or (removed is not None and removed in to_state):
                        pass
                    else:
                        following[to_state] = following.get(to_state, 0.0) + mass * probability
            distribution = following
        raise RuntimeError(f"the walk did not leave the transient states within {max_steps} steps")

    p_conversion = absorbed_in_conversion(None)
    p_removed = {channel: absorbed_in_conversion(channel) for channel in sorted(channels)}
    return _markov_result(p_conversion, p_removed, counts)


# --------------------------------------------------------------------------------------
# §4 SHAPLEY
# --------------------------------------------------------------------------------------


def coalition_table(paths: dict[Path, tuple]) -> dict[frozenset[str], tuple[int, int]]:
    """Coalition (distinct channels of a path) -> summed ``(conversions, nulls)``.

    Rows with ``conversions + nulls == 0`` are left out (see :func:`shapley_players`).
    """
    _check_paths(paths)
    table: dict[frozenset[str], tuple[int, int]] = {}
    for path, row in paths.items():
        conversions, nulls = int(row[0]), int(row[1])
        # AMBIGUITY: a path row with 0 conversions and 0 nulls (possible only in a table given to
        # fit_paths) is no journey at all; taken as absent: it makes no player, no observed coalition
        # and no Markov state.
        if conversions + nulls == 0:
            continue
        coalition = frozenset(path)
        old_conversions, old_nulls = table.get(coalition, (0, 0))
        table[coalition] = (old_conversions + conversions, old_nulls + nulls)
    return table


def shapley_players(paths: dict[Path, tuple]) -> list[str]:
    """The players N: every channel of a fitted path, sorted."""
    players: set[str] = set()
    for coalition in coalition_table(paths):
        players.update(coalition)
    return sorted(players)


def characteristic_function(paths: dict[Path, tuple], characteristic: str = "rate"):
    """``v`` of docs/data_driven.md §4 as a function of a frozenset of channels.

    ``"rate"``: conversions / (conversions + nulls) of the journeys whose coalition is exactly S, 0 for
    a set never observed (and for the empty set). ``"conversions"``: the conversions of the journeys
    whose coalition is a subset of S.
    """
    if characteristic not in CHARACTERISTICS:
        raise ValueError(f"characteristic must be one of {CHARACTERISTICS}, got {characteristic!r}")
    table = coalition_table(paths)

    def v(coalition: frozenset[str]) -> float:
        if characteristic == "rate":
            if coalition not in table:
                return 0.0
            conversions, nulls = table[coalition]
            return conversions / (conversions + nulls)
        total = 0
        for observed, (conversions, _nulls) in table.items():
            if observed <= coalition:
                total += conversions
        return float(total)

    return v


def shapley_permutations(paths: dict[Path, tuple], characteristic: str = "rate") -> dict:
    """Shapley values of the §4 game, averaged over all ``n!`` orderings of the players (n <= 8).

    ``φ_c`` = the mean over orderings of ``v(S ∪ {c}) - v(S)``, S the players before ``c``.

    Returns ``shapley_value`` {channel: φ}, ``share`` (``max(φ, 0)`` normalised to sum 1),
    ``coalition_values`` {observed coalition: v} and ``players``.
    """
    players = shapley_players(paths)
    n = len(players)
    if n > MAX_PERMUTATION_PLAYERS:
        raise ValueError(f"{n} players: enumerating all orderings is limited to {MAX_PERMUTATION_PLAYERS}")
    v = characteristic_function(paths, characteristic)
    values: dict[frozenset[str], float] = {}

    def cached_v(coalition: frozenset[str]) -> float:
        if coalition not in values:
            values[coalition] = v(coalition)
        return values[coalition]

    totals = {player: 0.0 for player in players}
    orderings = 0
    for ordering in itertools.permutations(players):
        orderings += 1
        before: frozenset[str] = frozenset()
        for player in ordering:
            after = before | {player}
            totals[player] += cached_v(after) - cached_v(before)
            before = after
    assert orderings == math.factorial(n)

    shapley_value = {player: totals[player] / orderings for player in players}
    return {
        "shapley_value": shapley_value,
        "share": _shares(shapley_value),
        "coalition_values": {coalition: v(coalition) for coalition in coalition_table(paths)},
        "players": players,
    }


def shapley_subsets(paths: dict[Path, tuple], characteristic: str = "rate") -> dict:
    """The same values by the subset sum of §4 (n <= 16), for tests with more players.

    ``φ_c = Σ_{S ⊆ N∖{c}} |S|! (n-|S|-1)! / n! · (v(S ∪ {c}) - v(S))``.
    """
    players = shapley_players(paths)
    n = len(players)
    if n > MAX_SUBSET_PLAYERS:
        raise ValueError(f"{n} players: enumerating all subsets is limited to {MAX_SUBSET_PLAYERS}")
    v = characteristic_function(paths, characteristic)
    shapley_value: dict[str, float] = {}
    for player in players:
        others = [p for p in players if p != player]
        total = 0.0
        for size in range(len(others) + 1):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                total += weight * (v(s | {player}) - v(s))
        shapley_value[player] = total
    return {
        "shapley_value": shapley_value,
        "share": _shares(shapley_value),
        "coalition_values": {coalition: v(coalition) for coalition in coalition_table(paths)},
        "players": players,
    }


# --------------------------------------------------------------------------------------
# §5 Crediting touchpoints
# --------------------------------------------------------------------------------------


def credit_journey(
    channels: list[str],
    share: dict[str, float],
    *,
    remove_direct_if_not_all: bool = False,
    direct: tuple[str, ...] = ("direct",),
    scale: dict[str, float] | None = None,
) -> tuple[list[float], bool]:
    """Weights of one journey's touchpoints, or none when the model credits it to no channel (§5).

    ``raw_i = share(c_i) / (count of c_i in the journey)``; with ``remove_direct_if_not_all`` a direct
    touch of a journey that also has non-direct touches has ``raw_i = 0``. ``weight_i = raw_i s(c_i) /
    Σ raw_j s(c_j)`` with the balancing multipliers ``scale`` (none: 1). When that sum is 0 (no channel of
    the journey has a positive share and multiplier: a baseline conversion) the journey gets no weights:
    ``([], True)``; otherwise ``(weights, False)``.
    """
    n = len(channels)
    if n == 0:
        raise ValueError("a journey with no touchpoint has no weights")
    every_touch_direct = all(channel in direct for channel in channels)

    raw: list[float] = []
    for channel in channels:
        if remove_direct_if_not_all and not every_touch_direct and channel in direct:
            raw.append(0.0)
            continue
        # The count is over the journey's touchpoints (not its transformed path): the channel's share is
        # split over all of its touches.
        count = sum(1 for other in channels if other == channel)
        # AMBIGUITY: a channel of the journey that is not in the fit (possible with transform="first",
        # whose paths keep only the first touch) has no share; taken as share 0.
        raw.append(share.get(channel, 0.0) / count)

    # §5 balancing: w_i = raw_i * scale(c_i); a journey whose scaled weights are all 0 is not credited.
    scaled = [r * (1.0 if scale is None else scale.get(c, 1.0)) for r, c in zip(raw, channels, strict=True)]
    total = 0.0
    for r in scaled:  # left to right
        total += r
    if total > 0.0:
        return [r / total for r in scaled], False
    return [], True


def balance_scale(table: dict[Path, tuple], share: dict[str, float]) -> dict[str, float] | None:
    """§5: the channel multipliers, balanced on the table's converting paths (each path one row of its
    distinct channels' shares, weighted by its conversions); None (no scaling) for ``transform="first"``
    tables, whose paths do not hold the credited journeys' channels (the caller decides)."""
    channels = sorted({c for path in table for c in path} | set(share))
    index = {c: i for i, c in enumerate(channels)}
    rows, weights = [], []
    for path, (conversions, _nulls, _micros) in table.items():
        if conversions > 0:
            rows.append({index[c]: share.get(c, 0.0) for c in set(path)})
            weights.append(float(conversions))
    out = balance_reference(rows, weights, [share.get(c, 0.0) for c in channels])
    return dict(zip(channels, out["scale"], strict=True))


def data_driven_reference(
    touchpoints: list[dict],
    conversions: list[dict],
    *,
    model: str,
    lookback_us: int = 30 * MICROS_PER_DAY,
    reset_after_conversion: bool = True,
    transform: str = "exposure",
    remove_direct_if_not_all: bool = False,
    order: int = 1,
    self_transitions: str = "keep",
    characteristic: str = "rate",
    group_by: tuple[str, ...] = ("anon_id",),
    direct_channels: tuple[str, ...] = ("direct",),
) -> tuple[list[dict], dict]:
    """MARKOV or SHAPLEY end to end: journeys -> path table -> fit -> links (§1-§5).

    Every converting journey's touchpoints are credited with :func:`credit_journey` and the value split
    by ``split_value`` (docs/attribution.md). Links are in conversion order, then position 1..n.

    The fit dict is that of :func:`markov_dense` or :func:`shapley_permutations` plus ``path_table``,
    ``journeys`` (all fitted journeys), ``baseline_conversions`` (converting journeys credited to no channel:
    they get no links) and ``uncredited`` (their conversion ids, in conversion order).
    """
    journeys = fitting_journeys(
        touchpoints,
        conversions,
        lookback_us=lookback_us,
        reset_after_conversion=reset_after_conversion,
        group_by=group_by,
    )
    table = path_table(
        journeys,
        transform=transform,
        remove_direct_if_not_all=remove_direct_if_not_all,
        direct=direct_channels,
    )
    if model == MARKOV:
        fit = markov_dense(table, order=order, self_transitions=self_transitions)
    elif model == SHAPLEY:
        fit = shapley_permutations(table, characteristic=characteristic)
    else:
        raise ValueError(f"unknown model {model!r}; expected {MARKOV!r} or {SHAPLEY!r}")

    links: list[dict] = []
    uncredited: list[str] = []
    scale = None if transform == "first" else balance_scale(table, fit["share"])
    for journey in journeys:
        if not journey["converted"]:
            continue
        channels = journey["channels"]
        weights, baseline = credit_journey(
            channels,
            fit["share"],
            remove_direct_if_not_all=remove_direct_if_not_all,
            direct=direct_channels,
            scale=scale,
        )
        if baseline:  # §5: a baseline conversion, unattributed for this model
            uncredited.append(journey["conversion_id"])
            continue
        credited = split_value(journey["value_micros"], weights)
        n = len(channels)
        for k in range(1, n + 1):
            links.append(
                {
                    "conversion_id": journey["conversion_id"],
                    "touchpoint_id": journey["touchpoint_ids"][k - 1],
                    "model": model,
                    "weight": weights[k - 1],
                    "position": k,
                    "touchpoint_count": n,
                    "credited_value_micros": credited[k - 1],
                    "channel": channels[k - 1],
                }
            )

    fit = {
        **fit,
        "path_table": table,
        "journeys": journeys,
        "baseline_conversions": len(uncredited),
        "uncredited": uncredited,
        "scale": scale,
    }
    return links, fit


def markov_links(touchpoints: list[dict], conversions: list[dict], **options: Any) -> tuple[list[dict], dict]:
    """:func:`data_driven_reference` with ``model="MARKOV"``."""
    return data_driven_reference(touchpoints, conversions, model=MARKOV, **options)


def shapley_links(touchpoints: list[dict], conversions: list[dict], **options: Any) -> tuple[list[dict], dict]:
    """:func:`data_driven_reference` with ``model="SHAPLEY"``."""
    return data_driven_reference(touchpoints, conversions, model=SHAPLEY, **options)


# --------------------------------------------------------------------------------------
# §6 DATA_DRIVEN: the per-journey decomposition
# --------------------------------------------------------------------------------------


def sigmoid(z: float) -> float:
    """The logistic function, without overflow for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def saturation(k: int, rho: float | None) -> float:
    """``f(k) = k`` (``rho=None``) or ``(1 - rho^k) / (1 - rho)`` with ``0 < rho < 1`` (§6)."""
    if rho is None:
        return float(k)
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    return (1.0 - rho**k) / (1.0 - rho)


def logistic_probability(
    counts: dict[str, int],
    intercept: float,
    coef: dict[str, float],
    *,
    rho: float | None = None,
) -> float:
    """``p(x) = σ(b + Σ_c β_c f(k_c(x)))`` of §6."""
    z = intercept
    for channel in sorted(counts):
        k = counts[channel]
        if k == 0:
            continue
        # AMBIGUITY: a channel of the journey without a fitted coefficient is taken as β = 0 (it cannot
        # happen when the journey was fitted on).
        z += coef.get(channel, 0.0) * saturation(k, rho)
    return sigmoid(z)


def logistic_shapley(
    counts: dict[str, int],
    intercept: float,
    coef: dict[str, float],
    *,
    rho: float | None = None,
) -> dict[str, float]:
    """Shapley values of ``v(S) = p(x restricted to S) - p(x restricted to ∅)`` over the journey's
    distinct channels D (channels with a positive count, d <= 8), averaged over all orderings (§6).

    ``x`` restricted to S keeps ``k_c`` for ``c ∈ S`` and sets the others to 0, so ``p(∅) = σ(b)``.
    Efficiency: ``Σ φ = p(x) - σ(b)``.
    """
    for channel, k in counts.items():
        if k < 0:
            raise ValueError(f"negative count for channel {channel!r}: {k}")
    distinct = sorted(channel for channel, k in counts.items() if k > 0)
    d = len(distinct)
    if d > MAX_PERMUTATION_PLAYERS:
        raise ValueError(f"{d} channels: enumerating all orderings is limited to {MAX_PERMUTATION_PLAYERS}")
    p_empty = logistic_probability({}, intercept, coef, rho=rho)

    values: dict[frozenset[str], float] = {}

    def v(coalition: frozenset[str]) -> float:
        if coalition not in values:
            restricted = {channel: counts[channel] for channel in coalition}
            values[coalition] = logistic_probability(restricted, intercept, coef, rho=rho) - p_empty
        return values[coalition]

    totals = {channel: 0.0 for channel in distinct}
    orderings = 0
    for ordering in itertools.permutations(distinct):
        orderings += 1
        before: frozenset[str] = frozenset()
        for channel in ordering:
            after = before | {channel}
            totals[channel] += v(after) - v(before)
            before = after
    return {channel: totals[channel] / orderings for channel in distinct}


# --------------------------------------------------------------------------------------
# §6 DATA_DRIVEN form="auto": the whole-journey model
# --------------------------------------------------------------------------------------


def gap_representative(gap_days: float) -> float:
    """§2's timed paths, literally: the gap between two touches of a path in buckets whose bounds are 15 minutes
    times ``2^(k/4)``, k = 0..48 (below 15 minutes one bucket; from the last bound, about 43 days, one
    bucket), each standing for its geometric middle (7.5 minutes for the first, 60 days for the last)."""
    quarter_hours = gap_days * 96.0
    if quarter_hours < 1.0:
        return 7.5 / 1440.0
    k = math.floor(4 * math.log2(quarter_hours))
    if k >= 48:
        return 60.0
    return 2.0 ** ((k + 0.5) / 4) / 96.0


def journey_stock(
    path: Path,
    j: int,
    rho: float,
    sat: float = 1.0,
    days: Sequence[float] | None = None,
    half_life: float | dict[str, float] = math.inf,
) -> dict[str, float]:
    """``x_{j,c} = Σ_{i <= j, c_i = c} rho^(j - i) 2^(-(t_j - t_i) / half_life) sat^(k_i - 1)``, ``k_i`` the
    ordinal of touch ``i`` among the touches of its channel, ``t`` the touches' times in days (``days``; a
    timed path): the decayed, saturating touches of each channel after touch ``j`` (1-based) of ``path``.
    ``half_life``: days, or a dict of each channel's own."""
    stock: dict[str, float] = {}
    seen: dict[str, int] = {}
    for i, channel in enumerate(path[:j], start=1):
        seen[channel] = seen.get(channel, 0) + 1
        age = 0.0 if days is None else days[j - 1] - days[i - 1]
        own = half_life[channel] if isinstance(half_life, dict) else half_life
        fade = 2.0 ** (-age / own) if math.isfinite(own) else 1.0
        stock[channel] = stock.get(channel, 0.0) + rho ** (j - i) * fade * sat ** (seen[channel] - 1)
    return stock


def ending_bucket(position: int) -> int:
    """Bucket of the ending process: positions 1..6 alone, then 7-8, 9-12, 13-20, 21+ (0-based index)."""
    for b, upper in enumerate((1, 2, 3, 4, 5, 6, 8, 12, 20)):
        if position <= upper:
            return b
    return 9


def funnel(
    paths: Sequence[Path], conversions: Sequence[float], nulls: Sequence[float], n_stages: int = 3
) -> tuple[dict[str, float], list[float]]:
    """The ending's funnel (docs/data_driven.md §6.1, "The funnel"), from its definition: each channel's
    lateness, the mean of ``(i - 1/2) / m`` over its touches ``i`` in the non-converting journeys of ``m >= 2``
    touches weighted by their counts (a channel in none of them: the mean over all those touches), and the
    stage cuts: for ``k = 1 .. n_stages - 1`` the smallest prefix mean lateness whose cumulative weight, over
    every prefix of every journey (weight: the journey's count, prefixes in increasing mean lateness), reaches
    ``k / n_stages`` of the total."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for path, n in zip(paths, nulls, strict=True):
        for i, channel in enumerate(path, start=1):
            if len(path) >= 2 and n > 0:
                num[channel] = num.get(channel, 0.0) + n * (i - 0.5) / len(path)
                den[channel] = den.get(channel, 0.0) + n
    overall = sum(num.values()) / sum(den.values()) if sum(den.values()) > 0 else 0.5
    lateness = {c: num[c] / den[c] if den.get(c, 0.0) > 0 else overall for path in paths for c in path}
    prefixes = []
    for path, a, b in zip(paths, conversions, nulls, strict=True):
        for j in range(1, len(path) + 1):
            prefixes.append((sum(lateness[c] for c in path[:j]) / j, a + b))
    prefixes.sort(key=lambda x: x[0])
    total = sum(w for _, w in prefixes)
    cuts = []
    for k in range(1, n_stages):
        running = 0.0
        for mean, w in prefixes:
            running += w
            if running >= k / n_stages * total:
                cuts.append(mean)
                break
    return lateness, cuts


def ending_stage(prefix: Path, model: dict) -> int:
    """The funnel stage of a prefix: how many of the model's ``funnel`` cuts its mean lateness is above (0
    without a ``funnel``)."""
    if "funnel" not in model:
        return 0
    lateness, cuts = model["funnel"]
    mean = sum(lateness[c] for c in prefix) / len(prefix)
    return sum(cut < mean for cut in cuts)


def journey_model_parts(
    path: Path, model: dict, keep: frozenset[str] | None = None, days: Sequence[float] | None = None
) -> tuple[list[float], list[float], float]:
    """Per touch the hazard ``h_j`` and the ending probability ``E_j = σ(g[bucket(j)] + g[10 s + bucket(j)] + γ[c_j] +
    γ'[c_{j-1}])`` (``γ'`` from the second touch; ``s`` the prefix's funnel stage, :func:`ending_stage`, the
    second ``g`` term only where ``s > 0``), and the
    end decision ``q`` of §6's whole-journey model. ``model``: ``form`` ("touch", "journey", "both"),
    ``rho``, ``sat`` (default 1), ``half_life`` (days or a dict of each channel's, default none) with ``days`` (the touches' times: a timed
    path), ``b_h``, ``beta_h`` (dict), ``b_p``, ``beta_p`` (dict), ``g`` (10 ending logits), ``gamma``
    (dict: the ending logit of the channel just seen), optional ``funnel`` (:func:`funnel`), ``gamma_prev`` (dict: the ending logit of the channel one touch
    back), optional ``pairs`` (dict ``(a, b) -> θ``: added to the end decision's logit when both channels are in the
    journey and kept), optional ``ordered_pairs`` (the same, when some touch of ``a`` comes before some touch of
    ``b``), optional ``first_effects`` (dict ``a -> θ``: when the journey's first touch is ``a`` and ``a`` is
    kept), optional ``held_h``, ``held_p`` (dicts: effects that every
    channel keeps whatever ``keep`` says, a calibrated fit's intent term). ``keep``: channels whose effects are
    kept (None: all)."""
    use_h = model["form"] in ("touch", "both")
    use_p = model["form"] in ("journey", "both")
    h, e = [], []
    for j in range(1, len(path) + 1):
        x = journey_stock(path, j, model["rho"], model.get("sat", 1.0), days, model.get("half_life", math.inf))
        z = model["b_h"] + sum(_effect(model, "h", c, keep) * v for c, v in x.items())
        h.append(sigmoid(z) if use_h else 0.0)
        ending = model["g"][ending_bucket(j)] + model.get("gamma", {}).get(path[j - 1], 0.0)
        stage = ending_stage(path[:j], model)
        if stage:  # a later funnel stage: its own term at each position bucket (10 of them per stage)
            ending += model["g"][10 * stage + ending_bucket(j)]
        if j >= 2:
            ending += model.get("gamma_prev", {}).get(path[j - 2], 0.0)
        e.append(sigmoid(ending))
    x = journey_stock(path, len(path), model["rho"], model.get("sat", 1.0), days, model.get("half_life", math.inf))
    w = model["b_p"] + sum(_effect(model, "p", c, keep) * v for c, v in x.items())
    for (a, b), theta in model.get("pairs", {}).items():  # a pair's effect: both channels seen and kept
        if a in x and b in x and (keep is None or (a in keep and b in keep)):
            w += theta
    for (a, b), theta in model.get("ordered_pairs", {}).items():  # some touch of a before some touch of b
        after_a = path[path.index(a) + 1 :] if a in path else ()
        if b in after_a and (keep is None or (a in keep and b in keep)):
            w += theta
    for a, theta in model.get("first_effects", {}).items():  # the journey's first touch is a
        if path[0] == a and (keep is None or a in keep):
            w += theta
    return h, e, sigmoid(w) if use_p else 0.0


def _effect(model: dict, part: str, channel: str, keep: frozenset[str] | None) -> float:
    """The coefficient of ``channel``'s stock in part ``part`` ("h" or "p"): its held effect, plus its own
    effect when ``keep`` keeps it."""
    own = model[f"beta_{part}"].get(channel, 0.0) if keep is None or channel in keep else 0.0
    return model.get(f"held_{part}", {}).get(channel, 0.0) + own


def journey_model_likelihood(path: Path, converted: bool, model: dict, days: Sequence[float] | None = None) -> float:
    """The probability of the observed journey: every touch before the last neither converts nor ends
    (``(1 - h_j)(1 - E_j)``); at the last, a converting journey converts at the touch or ends and decides to
    convert (``h_m + (1 - h_m) E_m q``), a non-converting one ends and decides not to
    (``(1 - h_m) E_m (1 - q)``)."""
    h, e, q = journey_model_parts(path, model, days=days)
    prob = 1.0
    for j in range(len(path) - 1):
        prob *= (1.0 - h[j]) * (1.0 - e[j])
    m = len(path) - 1
    return prob * (h[m] + (1.0 - h[m]) * e[m] * q if converted else (1.0 - h[m]) * e[m] * (1.0 - q))


def journey_model_probability(
    path: Path, model: dict, keep: frozenset[str] | None = None, days: Sequence[float] | None = None
) -> float:
    """``P(convert | path)`` with the effects of ``keep`` only: ``1 - Π_j (1 - h_j) · (1 - q)`` (the
    path's touches are taken as given; the ending process is not part of the counterfactual)."""
    h, _, q = journey_model_parts(path, model, keep, days)
    survive = 1.0 - q
    for hj in h:
        survive *= 1.0 - hj
    return 1.0 - survive


def journey_model_shapley(path: Path, model: dict, days: Sequence[float] | None = None) -> dict[str, float]:
    """Shapley values over the path's distinct channels of ``v(S) = P(convert | S) - P(convert | ∅)``,
    averaged over all orderings (at most ``MAX_PERMUTATION_PLAYERS`` channels)."""
    players = sorted(set(path))
    if len(players) > MAX_PERMUTATION_PLAYERS:
        raise ValueError(f"{len(players)} channels: too many to enumerate orderings")
    phi = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        prev = journey_model_probability(path, model, frozenset(), days)
        for i, c in enumerate(order):
            cur = journey_model_probability(path, model, frozenset(order[: i + 1]), days)
            phi[c] += cur - prev
            prev = cur
    return {c: v / len(orders) for c, v in phi.items()}


def logistic_hessian(params: Sequence[float], rows: Sequence[dict[int, float]], n: Sequence[float], l2: float) -> Any:
    """Hessian of the penalised logistic loss, written out: ``Σ_p n_p s_p (1 - s_p) x_p x_pᵀ`` with
    ``x_p = [1, features of row p]`` (a dense vector), plus ``l2`` on the effects' diagonal."""
    k = len(params)
    hess = np.zeros((k, k))
    for feats, weight in zip(rows, n, strict=True):
        x = np.zeros(k)
        x[0] = 1.0
        for code, value in feats.items():
            x[1 + code] += value
        s = 1.0 / (1.0 + math.exp(-float(np.dot(params, x))))
        hess += weight * s * (1.0 - s) * np.outer(x, x)
    hess[1:, 1:] += l2 * np.eye(k - 1)
    return hess


def prefix_tree(
    paths: Sequence[Sequence[tuple[int, int]]], conversions: Sequence[float], nulls: Sequence[float]
) -> dict[tuple[tuple[int, int], ...], tuple[float, float, float]]:
    """Per distinct prefix of the paths (each touch a ``(channel code, gap row)`` pair): the journeys that pass
    it and go on, and those that end there converted and not converted (kernels/journey_steps.py)."""
    out: dict[tuple[tuple[int, int], ...], list[float]] = {}
    for path, a, b in zip(paths, conversions, nulls, strict=True):
        for j in range(1, len(path) + 1):
            node = out.setdefault(tuple(path[:j]), [0.0, 0.0, 0.0])
            if j < len(path):
                node[0] += a + b
            else:
                node[1] += a
                node[2] += b
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def prefix_stock(prefix: Sequence[tuple[int, int]], factors: Sequence[Sequence[float]], sat: float) -> dict[int, float]:
    """The stock after the prefix's last touch: per channel, each of its touches ``i`` counted ``sat^(k_i - 1)``
    times the decays ``factors[row_l][channel]`` of every later touch ``l``."""
    stock: dict[int, float] = {}
    seen: dict[int, int] = {}
    for i, (channel, _) in enumerate(prefix):
        seen[channel] = seen.get(channel, 0) + 1
        fade = 1.0
        for _, row in prefix[i + 1 :]:
            fade *= factors[row][channel]
        stock[channel] = stock.get(channel, 0.0) + fade * sat ** (seen[channel] - 1)
    return stock


def pair_scores(paths: Sequence[Path], resid: Sequence[float], weight: Sequence[float]) -> list[dict]:
    """Three dicts of ``(Σ resid, Σ weight)``: ``with[(a, b)]`` (``a < b``) over the paths where both are
    touched, ``then[(a, b)]`` where some touch of ``a`` comes before some touch of ``b``, ``first[(a, a)]``
    where the path's first touch is ``a``."""
    with_: dict = {}
    then: dict = {}
    first: dict = {}
    for path, r, w in zip(paths, resid, weight, strict=True):
        if path:
            u, i = first.get((path[0], path[0]), (0.0, 0.0))
            first[(path[0], path[0])] = (u + r, i + w)
        for a, b in itertools.permutations(sorted(set(path)), 2):
            if a < b:
                u, i = with_.get((a, b), (0.0, 0.0))
                with_[(a, b)] = (u + r, i + w)
            if b in path[path.index(a) + 1 :]:
                u, i = then.get((a, b), (0.0, 0.0))
                then[(a, b)] = (u + r, i + w)
    return [with_, then, first]
