"""What a data-driven model's fit returns, and what every data-driven model shares (options, bootstrap)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from ..errors import ConfigError, ModelError
from ..kernels.alloc import split_value
from ..kernels.bootstrap import poisson_counts
from ..paths import TRANSFORMS
from .base import AttributionModel

if TYPE_CHECKING:
    from ..balance import ChannelBalance
    from ..config import AttributionConfig
    from ..paths import PathTable

__all__ = ["DataDrivenModel", "FittedModel"]


@dataclass(frozen=True)
class DataDrivenModel(AttributionModel):
    """A model fitted on a path table, then credited down to touchpoints (docs/data_driven.md).

    The parameters below are shared by every data-driven model.

    Parameters
    ----------
    transform
        Path transform before fitting: ``exposure``, ``unique``, ``first`` or ``frequency``.
    remove_direct_if_not_all
        Drop direct touches from journeys that also have non-direct ones (fit and credit).
    bootstrap
        Number of Poisson-bootstrap replicates for confidence intervals (0: none).
    level
        Confidence level of the intervals.
    seed
        Seed of the bootstrap.

    Raises
    ------
    ConfigError
        An unknown ``transform``, a non-bool ``remove_direct_if_not_all``, ``bootstrap`` or ``seed`` not an
        integer >= 0, ``level`` not in (0, 1).
    """

    transform: str = "exposure"
    remove_direct_if_not_all: bool = False
    bootstrap: int = 0
    level: float = 0.95
    seed: int = 0

    #: ``AttributionConfig`` fields that a model given by name takes its options from.
    config_fields: ClassVar[dict[str, str]] = {
        "transform": "path_transform",
        "remove_direct_if_not_all": "remove_direct_if_not_all",
        "bootstrap": "bootstrap",
        "level": "bootstrap_level",
        "seed": "seed",
    }

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"{self.name}: unknown path transform {self.transform!r}; valid: {', '.join(TRANSFORMS)}")
        if not isinstance(self.remove_direct_if_not_all, bool):
            raise ConfigError(f"{self.name}: remove_direct_if_not_all must be True or False")
        _int(self, "bootstrap", 0)
        _int(self, "seed", 0)
        if isinstance(self.level, bool) or not isinstance(self.level, (int, float)) or not 0 < self.level < 1:
            raise ConfigError(f"{self.name}: level must be in (0, 1), got {self.level!r}")

    @classmethod
    def from_config(cls, config: AttributionConfig) -> DataDrivenModel:
        """The model given by name: each field of :attr:`config_fields` taken from its ``config`` field.

        Parameters
        ----------
        config
            The run's options (``path_transform``, ``remove_direct_if_not_all``, ``bootstrap``,
            ``bootstrap_level``, ``seed``, and the model's own ones).

        Returns
        -------
        DataDrivenModel
            An instance of ``cls``.

        Raises
        ------
        ConfigError
            A value taken from ``config`` is invalid for the model.
        """
        return cls(**{name: getattr(config, source) for name, source in cls.config_fields.items()})

    def fit(self, table: PathTable, *, direct_channels: tuple[str, ...] = ("direct",)) -> FittedModel:
        """Fit on a path table (already transformed with ``self.transform``).

        Parameters
        ----------
        table
            The path table of the journeys to fit on (:func:`optiq_engine.fit_paths` builds it).
        direct_channels
            The channels counted as direct (default ``("direct",)``); each model documents whether it uses
            them.

        Returns
        -------
        FittedModel

        Raises
        ------
        NotImplementedError
            Always, here: every data-driven model overrides it.
        """
        raise NotImplementedError


def data_driven_names(models: Any, config: AttributionConfig) -> list[str]:
    """Names of the data-driven models among ``models`` (names or objects; None: the default models)."""
    from .base import resolve_models
    from .heuristic import HEURISTIC_MODELS

    return [m.name for m in resolve_models(models, config, default=HEURISTIC_MODELS) if isinstance(m, DataDrivenModel)]


def _int(model: Any, name: str, minimum: int) -> None:
    v = getattr(model, name)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ConfigError(f"{model.name}: {name} must be an integer >= {minimum}, got {v!r}")


@dataclass(frozen=True, eq=False, repr=False)
class FittedModel:
    """A fitted data-driven model.

    Made by the models' ``fit``; ``attribute`` sets ``baseline_conversions``, ``balance`` and ``credit_gap``.

    Parameters
    ----------
    model, channel_credit, paths
        The fields described under Attributes.
    replicates
        Default: an empty ``(0, 0)`` array (no bootstrap).
    baseline_conversions, balance, credit_gap
        Default 0, None, 0.0 (a fit not yet used by ``attribute``).

    Attributes
    ----------
    model
        The model (with its parameters).
    channel_credit
        One row per channel: ``channel``, ``share`` (sums to 1), ``conversions`` (share x fitted
        conversions), ``value_micros`` (the fitted value split exactly by share; in a fit returned by
        ``attribute()`` both are the sums of its links, ``result.credit``, docs/data_driven.md §5), the
        model's own statistic (``removal_effect`` or ``shapley_value``) and, when bootstrapped, ``ci_low``
        and ``ci_high`` of the share.
    paths
        The path table the model was fitted on.
    replicates
        Bootstrap shares, ``[bootstrap, channels]`` (empty without bootstrap); a replicate that drew no
        conversion has no shares: its row is NaN and the intervals leave it out.
    baseline_conversions
        Converting journeys of the run that the model credits to no channel (none of their channels has a
        positive share; DATA_DRIVEN: a positive ``φ`` of the journey's own with a positive share): baseline
        conversions, which get no links for this model and are listed in ``result.unattributed`` with its
        name (set by ``attribute``; docs/data_driven.md §5).
    balance
        The channel multipliers that make the links credit each channel its share, with the balance's
        iterations and residual (:class:`optiq_engine.balance.ChannelBalance`; set by ``attribute``,
        docs/data_driven.md §5).
    credit_gap
        Half the L1 distance between the run's credited shares (``result.shares()``) and ``share`` (0 up
        to the balance's tolerance unless its targets were infeasible or channels unreachable; set by
        ``attribute``).
    """

    model: DataDrivenModel
    channel_credit: pl.DataFrame
    paths: PathTable
    replicates: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    baseline_conversions: int = 0
    balance: ChannelBalance | None = None
    credit_gap: float = 0.0

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def shares(self) -> np.ndarray:
        """Shares aligned with ``paths.channels``."""
        return self.channel_credit.get_column("share").to_numpy()

    def shares_for(self, channels: Sequence[str]) -> np.ndarray:
        """Shares aligned with ``channels`` (0 for a channel the fit never saw).

        Parameters
        ----------
        channels
            Channel names, in any order (e.g. another partition's ``paths.channels``).

        Returns
        -------
        numpy.ndarray
            float64, the fitted share of each name of ``channels``.
        """
        share = dict(zip(self.paths.channels, self.shares.tolist(), strict=True))
        return np.array([share.get(c, 0.0) for c in channels], dtype=np.float64)

    def _summary_rows(self) -> list[tuple[str, float]]:
        return list(zip(self.channel_credit.get_column("channel").to_list(), self.shares.tolist(), strict=True))

    def __repr__(self) -> str:
        top = sorted(self._summary_rows(), key=lambda r: -r[1])[:5]
        shares = ", ".join(f"{c}={s:.3f}" for c, s in top)
        return (
            f"{type(self).__name__}({self.model!r}, paths={self.paths.height:,}, "
            f"conversions={self.paths.total_conversions:,.0f}, top shares: {shares})"
        )

    # --- notebook display (optiq_engine._html) ---
    def _repr_html_(self) -> str:
        from .._html import fitted_html

        return fitted_html(self)


def normalise(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` scaled to sum 1 (all zeros if nothing is positive).

    A value within ``1e-12`` of the largest ``|x|`` is rounding noise of the closed forms (a Shapley value
    of exactly 0 computed as ``1e-17``) and counts as 0: a positive share gives a channel weight in every
    journey where it is the only channel with one (docs/data_driven.md §5).
    """
    finite = np.isfinite(x)
    noise = 1e-12 * float(np.abs(x[finite]).max()) if finite.any() else 0.0
    pos = np.where(finite & (x > noise), x, 0.0)
    total = pos.sum()
    return pos / total if total > 0 else pos


def credit_frame(
    table: PathTable, shares: np.ndarray, statistic: tuple[str, np.ndarray], replicates: np.ndarray, level: float
) -> pl.DataFrame:
    """The ``channel_credit`` frame of a fit."""
    total_value = sum(table.value_micros.tolist())  # exact
    if total_value >= 2**63:
        raise ModelError(f"{table.height:,} paths hold more than 2**63 - 1 micros of conversion value in all")
    value = np.zeros(len(table.channels), dtype=np.int64)
    n = len(table.channels)
    if shares.sum() > 0:
        split_value(total_value, shares, value, np.empty(n), np.empty(n, dtype=np.bool_))
    cols: dict[str, Any] = {
        "channel": pl.Series(table.channels, dtype=pl.String),
        "share": shares,
        "conversions": shares * table.total_conversions,
        "value_micros": value,
        statistic[0]: statistic[1],
    }
    if replicates.shape[0]:  # a replicate without a conversion has no shares (NaN): left out
        drawn = replicates[np.isfinite(replicates).all(axis=1)]
        for name, q in (("ci_low", (1 - level) / 2), ("ci_high", (1 + level) / 2)):
            cols[name] = np.quantile(drawn, q, axis=0) if drawn.shape[0] else np.full(n, np.nan)
    return pl.DataFrame(cols)


def bootstrap_shares(
    model: DataDrivenModel, table: PathTable, shares_of: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Shares of ``model.bootstrap`` Poisson-bootstrap replicates: ``shares_of(conversions, nulls)``; a
    replicate that drew no conversion has no shares (0 / 0): a row of NaN, which the intervals leave out."""
    out = np.empty((model.bootstrap, len(table.channels)), dtype=np.float64)
    for r in range(model.bootstrap):
        conv, null = poisson_counts(table.hashes, table.conversions, table.nulls, model.seed, r)
        out[r] = shares_of(conv, null) if conv.sum() > 0 else np.nan
    return out
