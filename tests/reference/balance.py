"""Reference matrix balancing (docs/data_driven.md §5): slow, literal RAS / Sinkhorn-Knopp.

Rows are dicts ``{column: value}`` with a weight; the balance finds column multipliers ``s`` such that
the rows normalised after scaling, ``W[j][c] = A[j][c] s[c] / Σ A[j][c'] s[c']``, have weighted column
totals equal to the targets. Written from the docs, not from ``kernels/balance.py``: plain Python floats,
dictionaries, no row pre-scaling beyond what the docs state.
"""

from __future__ import annotations

import math


def normalised_rows(rows: list[dict[int, float]]) -> list[dict[int, float]]:
    """Every row divided by its largest entry (rows are scale-free: this only keeps floats finite)."""
    out = []
    for row in rows:
        top = max(row.values(), default=0.0)
        out.append({c: v / top for c, v in row.items()} if top > 0 else {c: 0.0 for c in row})
    return out


def balance_reference(
    rows: list[dict[int, float]],
    weights: list[float],
    target: list[float],
    *,
    tol: float = 1e-10,
    max_iter: int = 1_000,
) -> dict:
    """Multipliers, effective targets, weights and column totals of the balanced matrix.

    - A column with target <= 0 gets multiplier 0.
    - A row is free when its weight is positive and it has a positive entry in a column of positive
      target; the other rows are fixed and left out.
    - A column of positive target with no positive entry in a free row is unreachable; the targets of the
      reachable columns are rescaled to sum to the free rows' total weight.
    - Then: column totals of the row-normalised matrix; every reachable column's multiplier times
      target / total; until every relative column error is at most ``tol`` or ``max_iter`` steps.
    """
    rows = normalised_rows(rows)
    n = len(target)
    scale = [1.0 if t > 0 else 0.0 for t in target]
    free = [w > 0 and any(v > 0 and scale[c] > 0 for c, v in row.items()) for row, w in zip(rows, weights, strict=True)]
    reachable = [False] * n
    for row, is_free in zip(rows, free, strict=True):
        if is_free:
            for c, v in row.items():
                if v > 0 and scale[c] > 0:
                    reachable[c] = True
    free_weight = sum(w for w, f in zip(weights, free, strict=True) if f)
    mass = sum(t for t, r in zip(target, reachable, strict=True) if r)
    effective = [t / mass * free_weight if r else 0.0 for t, r in zip(target, reachable, strict=True)]

    def totals(s: list[float]) -> list[float]:
        out = [0.0] * n
        for row, w, is_free in zip(rows, weights, free, strict=True):
            if is_free:
                d = sum(v * s[c] for c, v in row.items())
                for c, v in row.items():
                    out[c] += w * v * s[c] / d
        return out

    steps = 0
    while True:
        total = totals(scale)
        error = max((abs(total[c] - effective[c]) / effective[c] for c in range(n) if reachable[c]), default=0.0)
        if error <= tol or steps >= max_iter:
            break
        for c in range(n):
            if reachable[c] and total[c] > 0:
                scale[c] *= effective[c] / total[c]
        top = max(scale)
        scale = [max(s / top, 1e-300) if reachable[c] else s for c, s in enumerate(scale)]
        steps += 1
    return {
        "scale": scale,
        "effective": effective,
        "free": free,
        "reachable": reachable,
        "totals": total,
        "residual": error,
        "converged": error <= tol,
    }


def balanced_weights(row: dict[int, float], scale: list[float]) -> dict[int, float]:
    """One row's weights: scaled and normalised; its own entries normalised when the scaled ones are all
    0 (a fixed row); empty when all its entries are 0."""
    row = normalised_rows([row])[0]
    scaled = {c: v * scale[c] for c, v in row.items()}
    for candidate in (scaled, row):
        total = math.fsum(candidate.values())
        if total > 0:
            return {c: v / total for c, v in candidate.items()}
    return {}
