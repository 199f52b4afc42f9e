"""Matrix balancing of the data-driven models' link weights (docs/data_driven.md §5).

RAS / Sinkhorn-Knopp iterative proportional fitting (Deming & Stephan, 1940; Sinkhorn, 1964; Bacharach,
1965): given a sparse non-negative matrix ``A`` (rows: converting journeys or distinct paths, each with a
weight; columns: channels), find column multipliers ``s`` so that the row-normalised matrix
``W[j, c] = A[j, c] s[c] / Σ_c' A[j, c'] s[c']`` has weighted column totals ``Σ_j w_j W[j, c]`` equal to
given targets.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["balance_columns"]

#: Multipliers are kept within [_TINY, 1] (rescaled by their maximum after every step).
_TINY = 1e-300


@jit
def balance_columns(row_offsets, col, value, row_weight, target, tol, max_iter):
    """Column multipliers that make the row-normalised matrix's column totals equal ``target``.

    Rows are normalised to sum 1 (over the columns whose multiplier is positive) and weighted by
    ``row_weight``. A column with ``target <= 0`` gets multiplier 0. A row is *free* when it has a positive
    entry in a column with a positive target; the other rows (*fixed*: all-zero, or positive only where the
    target is 0) are left out of the balance. A column with a positive target but no positive entry in a
    free row is *unreachable*: its target is dropped and the remaining targets are rescaled to sum to the
    free rows' total weight (the ``effective`` targets). Then alternately: column totals of the
    row-normalised matrix, and every reachable column's multiplier times ``effective / total``, until the
    largest relative column error is at most ``tol`` or ``max_iter`` steps were taken (when the targets
    cannot be met with this zero pattern, the error stops shrinking towards 0 and the cap ends the loop; no
    earlier stop, so that the result does not hinge on rounding).

    Parameters
    ----------
    row_offsets : int64[R + 1]
        CSR offsets of the rows' entries.
    col : int32 or int64[nnz]
        Column of every entry, in ``0 .. C - 1`` (a row may repeat a column: its entries add up).
    value : float64[nnz]
        Non-negative finite entries (any magnitude: every row is scaled by its largest entry first).
    row_weight : float64[R]
        Non-negative weight of every row (the conversions it stands for).
    target : float64[C]
        Non-negative column targets, read as proportions (only their ratios matter).
    tol : float
        Largest relative column error accepted.
    max_iter : int
        Most scaling steps.

    Returns
    -------
    scale : float64[C]
        Multipliers: 0 where ``target <= 0``, 1 for unreachable columns, in ``(0, 1]`` otherwise (the
        largest is 1).
    effective : float64[C]
        The targets the balance aimed at: 0 for dropped and unreachable columns; summing to the free
        rows' weight.
    iterations : int
        Scaling steps taken.
    residual : float
        ``max_c |total_c - effective_c| / effective_c`` over reachable columns at ``scale`` (0 when there
        is none).
    """
    n_cols = target.shape[0]
    a = _scaled_rows(row_offsets, value)
    scale = np.zeros(n_cols, dtype=np.float64)
    for c in range(n_cols):
        if target[c] > 0.0:
            scale[c] = 1.0
    free, reachable, free_weight = _free_rows(row_offsets, col, a, row_weight, scale)
    effective = _effective_targets(target, reachable, free_weight)
    total = np.zeros(n_cols, dtype=np.float64)
    iterations = 0
    residual = 0.0
    while True:  # serial: a parallel pass per step costs more than it saves on shared cores (measured)
        _column_totals(row_offsets, col, a, row_weight, scale, free, total)
        residual = _largest_error(total, effective, reachable)
        if residual <= tol or iterations >= max_iter:
            break
        _scaling_step(scale, total, effective, reachable)
        iterations += 1
    for c in range(n_cols):
        if target[c] > 0.0 and not reachable[c]:
            scale[c] = 1.0
    return scale, effective, iterations, residual


@jit
def _scaled_rows(row_offsets, value):
    """The entries with every row divided by its largest entry (a row with none above 0 stays 0)."""
    n_rows = row_offsets.shape[0] - 1
    a = np.zeros(value.shape[0], dtype=np.float64)  # rows scaled by their largest entry
    for r in range(n_rows):
        top = 0.0
        for k in range(row_offsets[r], row_offsets[r + 1]):
            top = max(top, value[k])
        if top > 0.0:
            for k in range(row_offsets[r], row_offsets[r + 1]):
                a[k] = value[k] / top
    return a


@jit
def _free_rows(row_offsets, col, a, row_weight, scale):
    """``(free, reachable, free_weight)``: the rows of positive weight with a positive entry in a column of
    positive multiplier, the columns such a row reaches, and the free rows' total weight."""
    n_rows = row_offsets.shape[0] - 1
    free = np.zeros(n_rows, dtype=np.bool_)
    reachable = np.zeros(scale.shape[0], dtype=np.bool_)
    free_weight = 0.0
    for r in range(n_rows):
        if row_weight[r] <= 0.0:
            continue
        for k in range(row_offsets[r], row_offsets[r + 1]):
            if a[k] > 0.0 and scale[col[k]] > 0.0:
                free[r] = True
        if free[r]:
            free_weight += row_weight[r]
            for k in range(row_offsets[r], row_offsets[r + 1]):
                if a[k] > 0.0 and scale[col[k]] > 0.0:
                    reachable[col[k]] = True
    return free, reachable, free_weight


@jit
def _effective_targets(target, reachable, free_weight):
    """The reachable columns' targets rescaled to sum to ``free_weight`` (0 elsewhere)."""
    n_cols = target.shape[0]
    mass = 0.0
    for c in range(n_cols):
        if reachable[c]:
            mass += target[c]
    effective = np.zeros(n_cols, dtype=np.float64)
    for c in range(n_cols):
        if reachable[c]:
            effective[c] = target[c] / mass * free_weight
    return effective


@jit
def _column_totals(row_offsets, col, a, row_weight, scale, free, total):
    """``total[c]``: the weighted column totals of the free rows, each row normalised at ``scale``."""
    total[:] = 0.0
    for r in range(row_offsets.shape[0] - 1):
        if not free[r]:
            continue
        d = 0.0
        for k in range(row_offsets[r], row_offsets[r + 1]):
            d += a[k] * scale[col[k]]
        f = row_weight[r] / d
        for k in range(row_offsets[r], row_offsets[r + 1]):
            total[col[k]] += f * a[k] * scale[col[k]]


@jit
def _largest_error(total, effective, reachable):
    """``max_c |total_c - effective_c| / effective_c`` over the reachable columns (0 when there is none)."""
    residual = 0.0
    for c in range(total.shape[0]):
        if reachable[c]:
            residual = max(residual, abs(total[c] - effective[c]) / effective[c])
    return residual


@jit
def _scaling_step(scale, total, effective, reachable):
    """Every reachable column's multiplier times ``effective / total``, then all divided by the largest (kept
    within ``[_TINY, 1]``)."""
    top = 0.0
    for c in range(scale.shape[0]):
        if reachable[c] and total[c] > 0.0:
            scale[c] *= effective[c] / total[c]
        top = max(top, scale[c])
    for c in range(scale.shape[0]):
        if reachable[c]:
            scale[c] = max(scale[c] / top, _TINY)
