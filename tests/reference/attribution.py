"""Reference heuristic attribution (docs/contract.md §2-§3 as completed by docs/attribution.md).

Written for obviousness, not speed: every conversion rescans every touchpoint and every
other conversion. Property tests compare the fast engine against this module. Where
docs/contract.md and docs/attribution.md differ, docs/attribution.md is followed.

Output order (callers comparing against the engine should sort): conversions in the
order given, then models in the order given, then position 1..n.
"""

from __future__ import annotations

import math
from typing import Any

MICROS_PER_DAY = 86_400_000_000

FIRST_TOUCH = "FIRST_TOUCH"
LAST_TOUCH = "LAST_TOUCH"
LAST_NON_DIRECT = "LAST_NON_DIRECT"
LINEAR = "LINEAR"
POSITION_BASED = "POSITION_BASED"
TIME_DECAY = "TIME_DECAY"
MODELS = (FIRST_TOUCH, LAST_TOUCH, LAST_NON_DIRECT, LINEAR, POSITION_BASED, TIME_DECAY)

Row = dict[str, Any]


# --------------------------------------------------------------------------------------
# Value split
# --------------------------------------------------------------------------------------


def split_value(value: int, weights: list[float]) -> list[int]:
    """Split ``value`` by ``weights`` with the largest-remainder rule of the docs.

    1. ``q_k = float(V) * w_k`` (float64); ``b_k = V`` if ``q_k >= float(V)`` else
       ``floor(q_k)``; ``f_k = q_k - floor(q_k)``.
    2. ``R = V - sum(b_k)`` in exact integers.
    3. ``R > 0``: one unit at a time to the largest ``(f_k, k)`` not yet served in
       this round; a new round starts when every position has been served.
    4. ``R < 0``: one unit at a time from the smallest ``(f_k, -k)`` whose current part
       is positive and that was not yet taken from in this round.
    """
    if value < 0:
        raise ValueError("value must be >= 0")
    n = len(weights)
    if n == 0:
        if value != 0:
            raise ValueError("cannot split a non-zero value over no weights")
        return []

    float_value = float(value)
    bases: list[int] = []
    fractions: list[float] = []
    for w in weights:
        q = float_value * w
        floor_q = math.floor(q)
        # "b_k = min(floor(q_k), V); a q_k that is not below float(V) gives V"
        base = value if q >= float_value else min(floor_q, value)
        bases.append(base)
        fractions.append(q - float(floor_q))

    parts = list(bases)
    remainder = value - sum(bases)

    # Step 3: hand out missing units, round by round, largest (f, position) first.
    served: set[int] = set()
    while remainder > 0:
        if len(served) == n:
            served = set()
        candidates = [k for k in range(n) if k not in served]
        best = max(candidates, key=lambda k: (fractions[k], k))
        parts[best] += 1
        served.add(best)
        remainder -= 1

    # Step 4: take back surplus units, smallest (f, -position) first, never below 0.
    taken: set[int] = set()
    while remainder < 0:
        candidates = [k for k in range(n) if parts[k] > 0 and k not in taken]
        if not candidates:
            taken = set()
            continue
        worst = min(candidates, key=lambda k: (fractions[k], -k))
        parts[worst] -= 1
        taken.add(worst)
        remainder += 1

    assert sum(parts) == value
    assert all(p >= 0 for p in parts)
    return parts


# --------------------------------------------------------------------------------------
# Model weights
# --------------------------------------------------------------------------------------


def model_weights(
    model: str,
    params: dict,
    times: list[int],
    channels: list[str],
    *,
    direct_channels: tuple[str, ...] = ("direct",),
) -> list[float]:
    """Weights of one conversion's eligible touchpoints, given in position order.

    ``params``: ``first`` / ``last`` (floats, default 0.4 / 0.4) for POSITION_BASED,
    ``half_life_us`` (int microseconds, default 7 days) for TIME_DECAY; ignored
    otherwise. TIME_DECAY ages are measured from the last touchpoint ``t_n``.
    """
    n = len(times)
    if n == 0:
        raise ValueError("a conversion with no eligible touchpoint has no weights")
    if len(channels) != n:
        raise ValueError("times and channels must have the same length")

    if model == FIRST_TOUCH:
        weights = []
        for k in range(1, n + 1):
            weights.append(1.0 if k == 1 else 0.0)
        return weights

    if model == LAST_TOUCH:
        weights = []
        for k in range(1, n + 1):
            weights.append(1.0 if k == n else 0.0)
        return weights

    if model == LAST_NON_DIRECT:
        chosen = n  # if every channel is direct, the last position gets the credit
        for k in range(n, 0, -1):
            if channels[k - 1] not in direct_channels:
                chosen = k
                break
        weights = []
        for k in range(1, n + 1):
            weights.append(1.0 if k == chosen else 0.0)
        return weights

    if model == LINEAR:
        weights = []
        for _ in range(n):
            weights.append(1.0 / n)
        return weights

    if model == POSITION_BASED:
        first = float(params.get("first", 0.4))
        last = float(params.get("last", 0.4))
        if n == 1:
            return [1.0]
        if n == 2:
            return [first / (first + last), last / (first + last)]
        middle = (1 - first - last) / (n - 2)
        weights = []
        for k in range(1, n + 1):
            if k == 1:
                weights.append(first)
            elif k == n:
                weights.append(last)
            else:
                weights.append(middle)
        return weights

    if model == TIME_DECAY:
        half_life = float(params.get("half_life_us", 7 * MICROS_PER_DAY))
        t_n = times[n - 1]
        raw = []
        for k in range(n):
            raw.append(2.0 ** (-float(t_n - times[k]) / half_life))
        total = 0.0
        for r in raw:  # left to right
            total += r
        weights = []
        for r in raw:
            weights.append(r / total)
        return weights

    raise ValueError(f"unknown model {model!r}")


# --------------------------------------------------------------------------------------
# Attribution
# --------------------------------------------------------------------------------------


def _group_key(row: Row, group_by: tuple[str, ...]) -> tuple:
    """The row's group key; an absent column or None is the key value None."""
    return tuple(row.get(column) for column in group_by)


def _touchpoint_order(tp: Row) -> tuple[int, bytes]:
    return (tp["occurred_at"], tp["touchpoint_id"].encode())


def _conversion_order(conv: Row) -> tuple[int, bytes]:
    return (conv["occurred_at"], conv["conversion_id"].encode())


def _value(conv: Row) -> int:
    """``value_micros``, 0 when absent or None (docs/contract.md §1: optional, default 0)."""
    value = conv.get("value_micros")
    return 0 if value is None else value


def attribute_reference(
    touchpoints: list[dict],
    conversions: list[dict],
    *,
    models: list[tuple[str, dict]],
    lookback_us: int = 30 * MICROS_PER_DAY,
    reset_after_conversion: bool = True,
    group_by: tuple[str, ...] = ("anon_id",),
    direct_channels: tuple[str, ...] = ("direct",),
) -> tuple[list[dict], list[dict]]:
    """Attribute each conversion to its eligible touchpoints under each model.

    Returns ``(links, unattributed)``; see the module docstring for the order of rows.
    """
    conversion_ids = [c["conversion_id"] for c in conversions]
    touchpoint_ids = [t["touchpoint_id"] for t in touchpoints]
    if len(set(conversion_ids)) != len(conversion_ids):
        raise ValueError("duplicate conversion_id")
    if len(set(touchpoint_ids)) != len(touchpoint_ids):
        raise ValueError("duplicate touchpoint_id")

    links: list[dict] = []
    unattributed: list[dict] = []

    for conv in conversions:
        key = _group_key(conv, group_by)
        t_conv = conv["occurred_at"]

        # All touchpoints of the conversion's group.
        group_touchpoints = []
        for tp in touchpoints:
            if _group_key(tp, group_by) == key:
                group_touchpoints.append(tp)

        # T_prev: time of the previous conversion in (occurred_at, id) order.
        previous = None
        for other in conversions:
            if _group_key(other, group_by) != key:
                continue
            order = _conversion_order(other)
            if order >= _conversion_order(conv):
                continue  # not before this conversion
            if previous is None or order > _conversion_order(previous):
                previous = other
        t_prev = None if previous is None else previous["occurred_at"]

        # Eligible touchpoints: T - L < t <= T, and t > T_prev when resetting.
        eligible = []
        for tp in group_touchpoints:
            t = tp["occurred_at"]
            if not (t_conv - lookback_us < t <= t_conv):
                continue
            if reset_after_conversion and t_prev is not None and not (t > t_prev):
                continue
            eligible.append(tp)
        eligible.sort(key=_touchpoint_order)

        if not eligible:
            unattributed.append(
                {
                    "conversion_id": conv["conversion_id"],
                    "anon_id": conv["anon_id"],
                    "occurred_at": t_conv,
                    "value_micros": _value(conv),
                    "reason": "no_touchpoints" if not group_touchpoints else "outside_window",
                }
            )
            continue

        n = len(eligible)
        times = [tp["occurred_at"] for tp in eligible]
        channels = [tp["channel"] for tp in eligible]
        for model, params in models:
            weights = model_weights(model, params, times, channels, direct_channels=direct_channels)
            credited = split_value(_value(conv), weights)
            for k in range(1, n + 1):
                tp = eligible[k - 1]
                links.append(
                    {
                        "conversion_id": conv["conversion_id"],
                        "touchpoint_id": tp["touchpoint_id"],
                        "model": model,
                        "weight": weights[k - 1],
                        "position": k,
                        "touchpoint_count": n,
                        "credited_value_micros": credited[k - 1],
                        "channel": tp["channel"],
                    }
                )

    return links, unattributed


# --------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------


def check_invariants(links: list[dict], conversions_by_id: dict[str, dict]) -> None:
    """Assert the per-(conversion, model) invariants of a links table.

    Weights sum to 1 within 1e-9 and lie in [0, 1]; credited values are >= 0 and sum
    exactly to the conversion's ``value_micros``; positions are exactly 1..n and
    ``touchpoint_count == n``.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for link in links:
        groups.setdefault((link["conversion_id"], link["model"]), []).append(link)

    for (conversion_id, model), rows in groups.items():
        where = f"conversion {conversion_id!r}, model {model}"
        n = len(rows)
        weight_sum = 0.0
        for row in rows:
            assert 0.0 <= row["weight"] <= 1.0, f"{where}: weight {row['weight']} outside [0, 1]"
            assert row["credited_value_micros"] >= 0, f"{where}: negative credited value"
            assert row["touchpoint_count"] == n, f"{where}: touchpoint_count != {n}"
            weight_sum += row["weight"]
        assert abs(weight_sum - 1.0) <= 1e-9, f"{where}: weights sum to {weight_sum}"
        positions = sorted(row["position"] for row in rows)
        assert positions == list(range(1, n + 1)), f"{where}: positions {positions}"
        credited_sum = sum(row["credited_value_micros"] for row in rows)
        expected = _value(conversions_by_id[conversion_id])
        assert credited_sum == expected, f"{where}: credited {credited_sum} != value {expected}"
