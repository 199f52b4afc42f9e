"""The likelihood of one stock shape of the whole-journey model over a path table's prefix tree
(kernels/journey_steps.py): the tree built once per table, the stocks once per shape, the weights once per
set of counts, then one pass over the nodes per Newton step."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ...kernels import journey_model as jm
from ...kernels import journey_steps as js

if TYPE_CHECKING:
    from ...paths import PathTable

#: Path rows from which the likelihood is summed in parallel (below, serially: ``form="auto"`` then fits two
#: candidates at once on threads).
PARALLEL_ROWS = 100_000
_TREES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per path table: its prefix tree


def _tree(table: PathTable, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """``table``'s prefix tree (:func:`~optiq_engine.kernels.journey_steps.prefix_nodes`), each node's
    previous channel and ending cell (:func:`ending_cells`); ``rows``: the touches' gap rows (the same for
    every shape of one table)."""
    if table not in _TREES:
        parent, code, depth, row, end = js.prefix_nodes(table.offsets, table.codes, rows)
        prev = np.where(parent >= 0, code[np.maximum(parent, 0)], -1).astype(np.int32)
        cell = ending_cells(table, parent, code, depth, end)
        _TREES[table] = (parent, code, depth, row, end, prev, cell)
    return _TREES[table]


def funnel_lateness(table: PathTable) -> np.ndarray:
    """Per channel code, how late in a journey its touches come: the mean of ``(i - 1/2) / m`` over its
    touches ``i`` of the non-converting journeys of ``m >= 2`` touches (whole journeys: a converting one is
    cut at its conversion), weighted by their counts; a channel seen in none of them gets the mean of all
    (docs/data_driven.md §6.1, "The funnel")."""
    n_ch = len(table.channels)
    lengths = np.diff(table.offsets)
    weight = np.repeat(np.where(lengths >= 2, table.nulls, 0.0), lengths)
    position = np.arange(table.codes.shape[0]) - np.repeat(table.offsets[:-1], lengths)
    r = (position + 0.5) / np.repeat(np.maximum(lengths, 1), lengths)
    num = np.bincount(table.codes, weights=weight * r, minlength=n_ch)
    den = np.bincount(table.codes, weights=weight, minlength=n_ch)
    overall = float((weight * r).sum() / weight.sum()) if weight.sum() > 0 else 0.5
    return np.where(den > 0, num / np.maximum(den, 1e-300), overall)


def ending_cells(
    table: PathTable, parent: np.ndarray, code: np.ndarray, depth: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Per node, its ending cell ``bucket(depth) + N_POSITIONS * stage``: the funnel stage (0 .. ``N_STAGES - 1``) is
    the quantile group of the mean :func:`funnel_lateness` of the node's touches among all nodes, weighted by the
    journeys that reach them (the table's counts). Parents come before their children, level by level."""
    if not code.shape[0]:
        return np.zeros(0, dtype=np.int32)
    lateness = funnel_lateness(table)
    total = np.zeros(code.shape[0])
    bounds = np.searchsorted(depth, np.arange(1, int(depth.max(initial=0)) + 2))  # the levels are contiguous
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        up = parent[lo:hi]
        total[lo:hi] = np.where(up >= 0, total[np.maximum(up, 0)], 0.0) + lateness[code[lo:hi]]
    mean = total / np.maximum(depth, 1)
    w_pass, w_conv, w_null = js.node_weights(parent, end, table.conversions, table.nulls)
    reach = w_pass + w_conv + w_null
    order = np.argsort(mean, kind="stable")
    cum = np.cumsum(reach[order])
    quantiles = np.arange(1, jm.N_STAGES) / jm.N_STAGES
    cuts = mean[order[np.minimum(np.searchsorted(cum, quantiles * cum[-1]), order.shape[0] - 1)]]
    stage = np.searchsorted(cuts, mean, side="left").astype(np.int32)
    positions = np.array([jm.bucket(d) for d in range(int(depth.max()) + 1)])  # the kernels' buckets, per depth
    return (positions[depth] + jm.N_POSITIONS * stage).astype(np.int32)


@dataclass(frozen=True)
class Likelihood:
    """The penalised negative log-likelihood of the whole-journey model at one stock shape, on one set of
    counts: :meth:`terms` (loss, gradient) and :meth:`hessian` (loss, gradient, Hessian), each one pass over
    the prefix tree's nodes.

    Parameters
    ----------
    tree
        ``(parent, code, depth, row, end, prev, cell)`` of the table's prefix tree.
    stocks
        ``(offsets, channels, values)``: each node's stock (:func:`~optiq_engine.kernels.journey_steps.node_stocks`).
    weights
        ``(w_pass, w_conv, w_null)`` per node.
    parallel
        Whether the passes run in parallel (large tables).
    """

    tree: tuple[np.ndarray, ...]
    stocks: tuple[np.ndarray, np.ndarray, np.ndarray]
    weights: tuple[np.ndarray, np.ndarray, np.ndarray]
    parallel: bool

    @classmethod
    def of(
        cls,
        table: PathTable,
        decay: tuple[np.ndarray, np.ndarray],
        sat: float,
        counts: tuple[np.ndarray, np.ndarray],
        pairs: np.ndarray | None = None,
    ) -> Likelihood:
        """The likelihood on ``table`` with the stock shape ``(decay, sat)`` (``step_decays``) and the journeys
        ``counts`` (conversions, nulls per path row); ``pairs``: the end part's pair effects (int
        ``(P, 3)``: channels and kind, ``JourneyModel.pairs``; their parameters follow the channels' in each
        block)."""
        tree = _tree(table, decay[0])
        parent, code, depth, row, end, _, _ = tree
        stocks = js.node_stocks(parent, code, depth, row, decay[1], float(sat), len(table.channels))
        if pairs is not None and pairs.shape[0]:
            stocks = js.pair_stocks(parent, code, *stocks, pairs, len(table.channels))
        weights = js.node_weights(parent, end, counts[0], counts[1])
        return cls(tree, stocks, weights, table.height >= PARALLEL_ROWS)

    def counted(self, counts: tuple[np.ndarray, np.ndarray]) -> Likelihood:
        """The same table and shape on other counts (a bootstrap replicate's)."""
        return replace(self, weights=js.node_weights(self.tree[0], self.tree[4], counts[0], counts[1]))

    def terms(self, params: np.ndarray, use_h: bool, use_p: bool, l2: float) -> tuple[float, np.ndarray]:
        """``(loss, gradient)`` at ``params`` (the form's parts ``use_h``, ``use_p``; penalty ``l2``)."""
        kernel = js.step_terms_parallel if self.parallel else js.step_terms
        return kernel(params, *self._nodes(), self.weights, use_h, use_p, float(l2))

    def hessian(self, params: np.ndarray, use_h: bool, use_p: bool, l2: float) -> tuple[float, np.ndarray, np.ndarray]:
        """``(loss, gradient, Hessian)`` at ``params`` in one pass."""
        kernel = js.step_hessian_parallel if self.parallel else js.step_hessian
        return kernel(params, *self._nodes(), self.weights, use_h, use_p, float(l2))

    def _nodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        _, code, _, _, _, prev, cell = self.tree
        off, chan, val = self.stocks
        return code, cell, prev, off, chan, val
