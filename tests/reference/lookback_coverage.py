"""Reference of ``result.lookback_coverage`` (docs/contract.md §2.1), written for obviousness: every conversion
rescans every touchpoint of its group."""

from __future__ import annotations

import math


def lookback_coverage(
    touchpoints: list[dict], conversions: list[dict], *, lookback_us: int, reset: bool, group_by: tuple[str, ...]
) -> tuple[int, int, int, int | None]:
    """``(conversions, cut, touchpoints_left_out, lookback_95 in µs)``.

    A conversion's journey: its group's touchpoints with ``t <= T`` and, with ``reset``, ``t > T_prev`` (the
    group's previous conversion in (time, id) order, so a conversion tied with an earlier one has none). Cut: some of them have ``t <= T - lookback``. ``lookback_95``:
    the smallest ``T - first t`` with at least 95 % of the conversions with a journey at or below it, plus 1 µs.
    """

    def key(row: dict) -> tuple:
        return tuple(row.get(k) for k in group_by)

    n = cut = left_out = 0
    spans = []
    for cv in conversions:
        t_conv = cv["occurred_at"]
        order = (t_conv, cv["conversion_id"])  # tied conversions: the first in id order takes the touches
        earlier = [
            c["occurred_at"]
            for c in conversions
            if key(c) == key(cv) and (c["occurred_at"], c["conversion_id"]) < order
        ]
        floor = max(earlier) if reset and earlier else -math.inf
        journey = [
            tp["occurred_at"] for tp in touchpoints if key(tp) == key(cv) and floor < tp["occurred_at"] <= t_conv
        ]
        if not journey:
            continue
        n += 1
        older = sum(1 for t in journey if t <= t_conv - lookback_us)
        cut += older > 0
        left_out += older
        spans.append(t_conv - min(journey))
    if not spans:
        return n, cut, left_out, None
    spans.sort()
    held = -(-95 * len(spans) // 100)  # ceil(0.95 n)  # the lookback must hold at least 95 % of the journeys whole
    return n, cut, left_out, spans[held - 1] + 1
