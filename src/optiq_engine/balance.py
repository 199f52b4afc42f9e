"""One credit per model and channel: the multipliers that make a data-driven model's links add up to its
channel shares (docs/data_driven.md §5)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from .kernels.balance import balance_columns

if TYPE_CHECKING:
    from .models import FittedModel

__all__ = ["ChannelBalance", "balance_fit", "TOLERANCE", "MAX_ITERATIONS"]

log = logging.getLogger(__name__)

#: Largest relative error of a channel's credited conversions accepted by the balance.
TOLERANCE = 1e-10
#: Most scaling steps of the balance.
MAX_ITERATIONS = 1_000


@dataclass(frozen=True, eq=False)
class ChannelBalance:
    """How a data-driven fit's link weights are scaled so that links credit each channel its share.

    Made by :func:`balance_fit`, which computes every field.

    Parameters
    ----------
    channels, scale, target, iterations, residual, unreachable_share, baseline_conversions
        The fields described under Attributes.
    balanced
        Default True; False for the fits whose links use the shares unscaled (see Attributes).

    Attributes
    ----------
    channels
        Channel names (the fit's ``paths.channels``).
    scale
        Multiplier of every channel (0: share 0; 1: not balanced or unreachable).
    target
        The conversions each channel is to receive over the fit's converting journeys: ``share x`` the
        conversions of the balanced journeys, the shares of unreachable channels dropped and the rest
        renormalised.
    iterations
        Scaling steps taken.
    residual
        Largest relative error of a channel's credited conversions over the fit's converting journeys
        (``nan``: not balanced, see ``balanced``).
    unreachable_share
        Sum of the shares of channels that no converting journey can credit (their share is positive, but
        they appear only in non-converting journeys): they get no credit.
    baseline_conversions
        Converting journeys that the model credits to no channel (no channel of the journey has both a
        positive share and, for DATA_DRIVEN, a positive ``φ`` of its own): baseline conversions, left out
        of the balance and without links for the model (reported in ``result.unattributed``).
    balanced
        False when the fit's paths do not hold the credited journeys' channels (``transform="first"`` of
        MARKOV and SHAPLEY): the links then use the shares unscaled; and for DATA_DRIVEN, whose links need no
        balance: each conversion is credited by its journey's own ``φ`` or is a baseline conversion, by a
        draw (docs/data_driven.md §5).
    """

    channels: tuple[str, ...]
    scale: np.ndarray
    target: np.ndarray
    iterations: int
    residual: float
    unreachable_share: float
    baseline_conversions: float
    balanced: bool = True

    @property
    def converged(self) -> bool:
        """Whether every channel's credit is within :data:`TOLERANCE` of its target."""
        return self.balanced and self.residual <= TOLERANCE

    def scale_for(self, channels: Sequence[str]) -> np.ndarray:
        """Multipliers aligned with ``channels`` (1 for a channel the fit never saw: its share is 0).

        Parameters
        ----------
        channels
            Channel names, in the order of the caller's channel codes.

        Returns
        -------
        numpy.ndarray
            float64, one multiplier per name of ``channels``.
        """
        scale = dict(zip(self.channels, self.scale.tolist(), strict=True))
        return np.array([scale.get(c, 1.0) for c in channels], dtype=np.float64)

    def __repr__(self) -> str:
        if not self.balanced:
            return "ChannelBalance(balanced=False)"
        return (
            f"ChannelBalance(iterations={self.iterations}, residual={self.residual:.1e}, "
            f"unreachable_share={self.unreachable_share:.3g}, baseline_conversions={self.baseline_conversions:,.0f})"
        )


def balance_fit(fit: FittedModel, *, tol: float = TOLERANCE, max_iter: int = MAX_ITERATIONS) -> ChannelBalance:
    """The channel multipliers of a data-driven fit, balanced on the converting paths it was fitted on.

    Parameters
    ----------
    fit
        A fitted MARKOV, SHAPLEY or DATA_DRIVEN model.
    tol, max_iter
        Stop when every channel's credit is within ``tol`` (relative) of its target, or after
        ``max_iter`` steps.

    Returns
    -------
    ChannelBalance

    Notes
    -----
    A converting journey's link weights are ``w_l ∝ raw_l · s_{c(l)}``, normalised over the journey, with
    ``raw_l = share(c)/count(c)`` (DATA_DRIVEN: the journey's own ``max(φ_c, 0)/count(c)``). Summed over a
    channel's touches within the journey, ``raw`` gives ``share(c)`` (or ``max(φ_c, 0)``) for every channel
    of the journey's path: the journey x channel matrix of the balance is one row per converting path of
    the path table, weighted by its conversions. The multipliers ``s`` come from RAS / Sinkhorn-Knopp
    iterative proportional fitting (:func:`optiq_engine.kernels.balance.balance_columns`). They are a
    function of the fit alone (its shares and its path table), so every partition of the fitted users
    credited with the same fit gets the links of the whole run.
    """
    from .models.conversion import FittedDataDriven

    table = fit.paths
    n = len(table.channels)
    # DATA_DRIVEN: credited by its own φ and baseline draws (docs/data_driven.md §5)
    if isinstance(fit, FittedDataDriven) or fit.model.transform == "first":
        return ChannelBalance(
            table.channels, np.ones(n), fit.shares * table.total_conversions, 0, float("nan"), 0.0, 0.0, balanced=False
        )
    # rows in path-hash order: the same sums in any order of the table (a run's, or Spark's concatenation)
    order = np.argsort(table.hashes, kind="stable")
    rank = np.empty(table.height, dtype=np.int64)
    rank[order] = np.arange(table.height, dtype=np.int64)
    rows = np.repeat(rank, np.diff(table.offsets))
    weight = np.ascontiguousarray(table.conversions[order], dtype=np.float64)
    keep = weight[rows] > 0
    width = max(n, 1)
    key = np.sort(rows[keep] * width + table.codes[keep].astype(np.int64))
    key = key[np.r_[True, key[1:] != key[:-1]]] if key.shape[0] else key  # distinct (row, channel)
    row, code = key // width, key % width
    shares = np.asarray(fit.shares, dtype=np.float64)
    if isinstance(fit, FittedDataDriven):  # a row per path: its own φ
        value = fit.path_shares()[order[row], code]
    else:  # a row per channel set: the paths with the same channels are the same row
        row, code, weight = _channel_sets(row, code, weight)
        value = shares[code]
    offsets = np.zeros(weight.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=weight.shape[0]), out=offsets[1:])
    scale, effective, iterations, residual = balance_columns(
        offsets, code, np.ascontiguousarray(value, dtype=np.float64), weight, shares, tol, max_iter
    )
    reachable = effective > 0
    unreachable = float(shares[~reachable & (shares > 0)].sum())
    free = np.zeros(weight.shape[0], dtype=np.bool_)
    free[row[(value > 0) & (shares[code] > 0)]] = True
    baseline = float(weight[(weight > 0) & ~free].sum())
    out = ChannelBalance(table.channels, scale, effective, int(iterations), float(residual), unreachable, baseline)
    if residual > tol:
        log.warning(
            "%s: the links credit some channel a relative %.2g away from its share x conversions; its "
            "journeys cannot give it exactly that (docs/data_driven.md §5; %s)",
            fit.name,
            residual,
            out,
        )
    return out


def _channel_sets(row: np.ndarray, code: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (sorted by row, then code) merged by their set of codes, in order of first appearance, each with
    the summed weight of its rows: ``(row, code, weight)`` of the merged rows."""
    per_row = pl.DataFrame({"row": row, "code": code}).group_by("row", maintain_order=True).agg(pl.col("code"))
    per_row = per_row.with_columns(weight=pl.Series(weight[per_row.get_column("row").to_numpy()]))
    sets = per_row.group_by("code", maintain_order=True).agg(pl.col("weight").sum())
    lengths = sets.get_column("code").list.len().to_numpy()
    merged_row = np.repeat(np.arange(sets.height, dtype=np.int64), lengths)
    merged_code = sets.get_column("code").explode().to_numpy().astype(np.int64)
    return merged_row, merged_code, np.ascontiguousarray(sets.get_column("weight").to_numpy(), dtype=np.float64)
