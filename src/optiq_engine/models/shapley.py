"""SHAPLEY: exact Shapley values of the channel coalition game (docs/data_driven.md §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import polars as pl

from ..errors import ConfigError, ModelError
from ..kernels.shapley import coalition_shapley, path_masks
from .base import register_model
from .fitted import DataDrivenModel, FittedModel, bootstrap_shares, credit_frame, normalise

if TYPE_CHECKING:
    from ..paths import PathTable

__all__ = ["Shapley", "FittedShapley", "Coalitions", "CHARACTERISTICS"]

#: Characteristic functions: ``rate`` (docs/contract.md §6) and ``conversions`` (Zhao et al. 2018).
CHARACTERISTICS = ("rate", "conversions")
MAX_PLAYERS = 64


@register_model
@dataclass(frozen=True)
class Shapley(DataDrivenModel):
    """Channel credit from the exact Shapley values of the coalition game of the paths.

    Parameters
    ----------
    characteristic
        The coalitions' worth: ``"rate"`` (default; conversions / journeys of the coalition, docs/contract.md
        §6) or ``"conversions"`` (Zhao et al. 2018); ``shapley_characteristic`` when given by name.
    transform, remove_direct_if_not_all, bootstrap, level, seed
        Shared by every data-driven model (:class:`~optiq_engine.models.DataDrivenModel`).

    Raises
    ------
    ConfigError
        ``characteristic`` is not one of :data:`CHARACTERISTICS`, or a shared parameter is invalid.
    """

    name = "SHAPLEY"
    characteristic: str = "rate"

    config_fields: ClassVar[dict[str, str]] = {
        **DataDrivenModel.config_fields,
        "characteristic": "shapley_characteristic",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.characteristic not in CHARACTERISTICS:
            raise ConfigError(f"SHAPLEY characteristic must be one of {CHARACTERISTICS}, got {self.characteristic!r}")

    def fit(self, table: PathTable, *, direct_channels: tuple[str, ...] = ("direct",)) -> FittedShapley:
        """Fit the coalition game on a path table: its Shapley values, normalised to shares (and their bootstrap).

        Parameters
        ----------
        table
            The path table (already transformed with ``self.transform``).
        direct_channels
            Not used by SHAPLEY (the common signature of :meth:`DataDrivenModel.fit`).

        Returns
        -------
        FittedShapley
            ``channel_credit`` with ``shapley_value``, and the coalitions.

        Raises
        ------
        ModelError
            More than 64 channels occur in the paths, or the paths' conversion values sum to 2**63 micros or
            more.
        """
        game = Coalitions(table)
        phi = game.shapley(table.conversions, table.nulls, self.characteristic)
        shares = normalise(phi)
        replicates = bootstrap_shares(self, table, lambda c, n: normalise(game.shapley(c, n, self.characteristic)))
        return FittedShapley(
            model=self,
            channel_credit=credit_frame(table, shares, ("shapley_value", phi), replicates, self.level),
            paths=table,
            replicates=replicates,
            game=game,
        )


class Coalitions:
    """The distinct channel sets of a path table as 64-bit masks over the channels that occur.

    Parameters
    ----------
    table
        The path table; each path row belongs to the coalition of its distinct channels.

    Raises
    ------
    ModelError
        More than 64 channels occur in the table's paths.
    """

    def __init__(self, table: PathTable) -> None:
        n_codes = len(table.channels)
        present = np.flatnonzero(np.bincount(table.codes, minlength=n_codes) > 0)
        if present.shape[0] > MAX_PLAYERS:
            raise ModelError(
                f"SHAPLEY supports at most {MAX_PLAYERS} channels in the fitted paths, got {present.shape[0]}; "
                "group channels (channel_rules) or fit on fewer"
            )
        player = np.full(max(n_codes, 1), -1, dtype=np.int64)
        player[present] = np.arange(present.shape[0])
        masks = path_masks(table.offsets, table.codes, player)
        self.masks, self._inverse = np.unique(masks, return_inverse=True)
        self.players = present  # channel code of each player bit
        self.channels = table.channels

    def sums(self, conversions: np.ndarray, nulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conversions and nulls of every coalition.

        Parameters
        ----------
        conversions, nulls
            Counts of every path row of the table (its own, or a bootstrap replicate's).

        Returns
        -------
        tuple of numpy.ndarray
            ``(conversions, nulls)`` summed per coalition, aligned with :attr:`masks`.
        """
        n = self.masks.shape[0]
        return (
            np.bincount(self._inverse, weights=conversions, minlength=n),
            np.bincount(self._inverse, weights=nulls, minlength=n),
        )

    def values(self, conversions: np.ndarray, nulls: np.ndarray, characteristic: str) -> np.ndarray:
        """``v(T)`` (rate) or the worth ``r(T)`` (conversions) of every observed coalition.

        Parameters
        ----------
        conversions, nulls
            Counts of every path row of the table.
        characteristic
            ``"rate"`` (conversions / (conversions + nulls), 0 for a coalition with no journey) or
            ``"conversions"``.

        Returns
        -------
        numpy.ndarray
            float64, aligned with :attr:`masks`.
        """
        conv, null = self.sums(conversions, nulls)
        if characteristic == "conversions":
            return conv
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(conv + null > 0, conv / (conv + null), 0.0)

    def shapley(self, conversions: np.ndarray, nulls: np.ndarray, characteristic: str) -> np.ndarray:
        """Shapley value of every channel (0 for channels in no path).

        Parameters
        ----------
        conversions, nulls
            Counts of every path row of the table.
        characteristic
            ``"rate"`` or ``"conversions"`` (:meth:`values`).

        Returns
        -------
        numpy.ndarray
            float64, aligned with the table's ``channels``.
        """
        v = self.values(conversions, nulls, characteristic)
        phi = coalition_shapley(self.masks, v, self.players.shape[0], characteristic == "conversions")
        # rounding noise at the scale of the coalitions' values is 0: where every value is exactly 0 (a game
        # whose coalitions all convert alike), 5.6e-17 for one channel made its share 1 (fitted.normalise's own
        # guard is relative to the largest value, itself noise there)
        phi[np.abs(phi) <= 1e-12 * float(np.abs(v).max(initial=0.0))] = 0.0
        out = np.zeros(len(self.channels), dtype=np.float64)
        out[self.players] = phi
        return out

    def frame(self, conversions: np.ndarray, nulls: np.ndarray, characteristic: str) -> pl.DataFrame:
        """``coalition`` (sorted channel names), ``conversions``, ``nulls``, ``value``.

        Parameters
        ----------
        conversions, nulls
            Counts of every path row of the table.
        characteristic
            ``"rate"`` or ``"conversions"`` (:meth:`values`).

        Returns
        -------
        polars.DataFrame
            One row per observed coalition.
        """
        names = [self.channels[c] for c in self.players]
        coalitions = [[names[b] for b in range(len(names)) if (m >> b) & 1] for m in self.masks.tolist()]
        conv, null = self.sums(conversions, nulls)
        return pl.DataFrame(
            {
                "coalition": pl.Series(coalitions, dtype=pl.List(pl.String)),
                "conversions": conv,
                "nulls": null,
                "value": self.values(conversions, nulls, characteristic),
            }
        )


@dataclass(frozen=True, eq=False, repr=False)
class FittedShapley(FittedModel):
    """A fitted :class:`Shapley` model: ``channel_credit`` plus the coalition values.

    Made by :meth:`Shapley.fit`.

    Parameters
    ----------
    model, channel_credit, paths, replicates, baseline_conversions, balance, credit_gap
        As :class:`~optiq_engine.models.FittedModel`.
    game
        The :class:`Coalitions` of ``paths``.
    """

    game: Coalitions | None = None

    @property
    def coalition_values(self) -> pl.DataFrame:
        assert self.game is not None
        return self.game.frame(self.paths.conversions, self.paths.nulls, self.model.characteristic)  # type: ignore[attr-defined]
