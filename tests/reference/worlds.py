"""Slow, literal reference of the worlds' truth (docs/worlds.md §2-§3), written from the docs, not the kernels.

``probability`` evaluates a user's conversion probability for a set ``S`` of channels straight from the
formulas (per-touch mechanisms: by enumerating every outcome of the ``2^n`` touch decisions), and ``shapley``
averages marginal contributions over every ordering of the user's channels. ``user_holdout`` and
``holdout_effects`` recompute the holdout effect of each channel (docs/worlds.md §3.1) from the
same ``probability``, user by user.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

DAY_US = 86_400 * 1_000_000

Touch = tuple[str, int]  # (channel, time in µs)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def probability(
    params: dict[str, Any], segment: str, intent: float, touches: Sequence[Touch], decision: int | None, s: set[str]
) -> float:
    """P(convert | the user's exposures restricted to the channels in ``s``)."""
    seg = next(g for g in params["segments"] if g["name"] == segment)
    base = seg["alpha"] + params["intent_sd"] * intent
    beta = seg["beta"]
    half_life = {c: h * DAY_US for c, h in params["half_life_days"].items()}
    kept = [(c, t) for c, t in touches if c in s]
    if seg["kind"] == "end_counts":
        x = base
        for c in {c for c, _ in kept}:
            n = sum(1 for d, _ in kept if d == c)
            g = n if params["transform"] == "linear" else math.log2(1 + n)
            x += beta.get(c, 0.0) * g - seg["quad"].get(c, 0.0) * n * n
        for pair in params["pairs"]:
            a, b = pair["first"], pair["second"]
            if pair["type"] == "together":
                hit = any(c == a for c, _ in kept) and any(c == b for c, _ in kept)
            else:
                hit = any(ca == a and cb == b and tb > ta for ca, ta in kept for cb, tb in kept)
            if hit:
                x += pair["beta"]
        thr = params["threshold"]
        if thr is not None and sum(1 for c, _ in kept if c in thr["channels"]) >= thr["k"]:
            x += thr["beta"]
        return _sigmoid(x)
    if seg["kind"] == "end_decay":
        assert decision is not None
        return _sigmoid(base + sum(beta.get(c, 0.0) * 2.0 ** (-(decision - t) / half_life[c]) for c, t in kept))
    hazards = []
    for j, (_, tj) in enumerate(touches):  # every touch decides, whatever its channel
        before = [(c, t) for c, t in kept if t <= tj]
        if seg["kind"] == "touch_stock":
            x = base
            for c in {c for c, _ in before}:
                n = sum(1 for d, _ in before if d == c)
                x += beta.get(c, 0.0) * sum(params["rho"] ** i for i in range(n))
        else:  # touch_decay
            x = base + sum(beta.get(c, 0.0) * 2.0 ** (-(tj - t) / half_life[c]) for c, t in before)
        hazards.append(_sigmoid(x))
        assert j == len(hazards) - 1
    total = 0.0
    for outcome in itertools.product((0, 1), repeat=len(hazards)):
        if any(outcome):
            total += math.prod(p if o else 1.0 - p for p, o in zip(hazards, outcome, strict=True))
    return total


def shapley(players: Sequence[str], value: Callable[[frozenset[str]], float]) -> dict[str, float]:
    """Shapley values by averaging marginal contributions over all orderings of ``players``."""
    cache: dict[frozenset[str], float] = {}

    def v(coalition: frozenset[str]) -> float:
        if coalition not in cache:
            cache[coalition] = value(coalition)
        return cache[coalition]

    out = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        before: frozenset[str] = frozenset()
        for p in order:
            out[p] += v(before | {p}) - v(before)
            before = before | {p}
    return {p: x / len(orders) for p, x in out.items()}


def user_truth(
    params: dict[str, Any], segment: str, intent: float, touches: Sequence[Touch], decision: int | None
) -> tuple[dict[str, float], float, float]:
    """A user's Shapley values (game ``v(S) = P(S) - P(∅)``), ``P(convert)`` and ``P(convert | ∅)``."""
    players = sorted({c for c, _ in touches})
    none = probability(params, segment, intent, touches, decision, set())
    values = shapley(players, lambda s: probability(params, segment, intent, touches, decision, set(s)) - none)
    return values, probability(params, segment, intent, touches, decision, set(players)), none


def user_holdout(
    params: dict[str, Any], segment: str, intent: float, touches: Sequence[Touch], decision: int | None
) -> dict[str, float]:
    """A user's holdout effect of each channel it touched: ``P(D) - P(D minus the channel)``, ``D`` its channels."""
    touched = {c for c, _ in touches}
    everything = probability(params, segment, intent, touches, decision, touched)
    return {c: everything - probability(params, segment, intent, touches, decision, touched - {c}) for c in touched}


User = tuple[str, float, Sequence[Touch], int | None]  # (segment, intent, touches, decision time or None)


def holdout_effects(params: dict[str, Any], users: Sequence[User]) -> dict[str, float]:
    """Every channel's holdout effect summed over ``users`` (0 for a channel none of them touched)."""
    out = dict.fromkeys(params["channels"], 0.0)
    for segment, intent, touches, decision in users:
        for c, effect in user_holdout(params, segment, intent, touches, decision).items():
            out[c] += effect
    return out
