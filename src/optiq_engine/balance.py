"""One credit per model and channel: the multipliers that make a data-driven model's links add up to its
channel shares (docs/data_driven.md §5)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

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
    fixed_conversions
        Converting journeys left at their own weights: none of their channels has a positive share
        (LINEAR fallback, or for DATA_DRIVEN the journey's own ``max(φ, 0)``).
    balanced
        False when the fit's paths do not hold the credited journeys' channels (``transform="first"`` of
        MARKOV and SHAPLEY): the links then use the shares unscaled.
    """

    channels: tuple[str, ...]
    scale: np.ndarray
    target: np.ndarray
    iterations: int
    residual: float
    unreachable_share: float
    fixed_conversions: float
    balanced: bool = True

    @property
    def converged(self) -> bool:
        """Whether every channel's credit is within :data:`TOLERANCE` of its target."""
        return self.balanced and self.residual <= TOLERANCE

    def scale_for(self, channels: Sequence[str]) -> np.ndarray:
        """Multipliers aligned with ``channels`` (1 for a channel the fit never saw: its share is 0)."""
        scale = dict(zip(self.channels, self.scale.tolist(), strict=True))
        return np.array([scale.get(c, 1.0) for c in channels], dtype=np.float64)

    def __repr__(self) -> str:
        if not self.balanced:
            return "ChannelBalance(balanced=False)"
        return (
            f"ChannelBalance(iterations={self.iterations}, residual={self.residual:.1e}, "
            f"unreachable_share={self.unreachable_share:.3g}, fixed_conversions={self.fixed_conversions:,.0f})"
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
    if fit.model.transform == "first" and not isinstance(fit, FittedDataDriven):
        return ChannelBalance(table.channels, np.ones(n), fit.shares * table.total_conversions, 0, float("nan"),
                              0.0, 0.0, balanced=False)  # fmt: skip
    # rows in path-hash order: the same sums in any order of the table (a run's, or Spark's concatenation)
    order = np.argsort(table.hashes, kind="stable")
    rank = np.empty(table.height, dtype=np.int64)
    rank[order] = np.arange(table.height, dtype=np.int64)
    rows = np.repeat(rank, np.diff(table.offsets))
    keep = table.conversions[order][rows] > 0
    width = max(n, 1)
    key = np.unique(rows[keep] * width + table.codes[keep].astype(np.int64))  # distinct (row, channel)
    row, code = key // width, key % width
    value = fit.path_shares()[order[row], code] if isinstance(fit, FittedDataDriven) else fit.shares[code]
    offsets = np.zeros(table.height + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=table.height), out=offsets[1:])
    shares = np.asarray(fit.shares, dtype=np.float64)
    scale, effective, iterations, residual = balance_columns(
        offsets, code, np.ascontiguousarray(value, dtype=np.float64),
        np.ascontiguousarray(table.conversions[order], dtype=np.float64), shares, tol, max_iter,
    )  # fmt: skip
    reachable = effective > 0
    unreachable = float(shares[~reachable & (shares > 0)].sum())
    weight = table.conversions[order]
    free = np.zeros(table.height, dtype=np.bool_)
    free[row[(value > 0) & (shares[code] > 0)]] = True
    fixed = float(weight[(weight > 0) & ~free].sum())
    out = ChannelBalance(table.channels, scale, effective, int(iterations), float(residual), unreachable, fixed)
    if residual > tol:
        log.warning("%s: link weights balanced to within %.2g of the channel shares only (%s)", fit.name, residual, out)
    return out
