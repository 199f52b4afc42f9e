"""A fitted DATA_DRIVEN model: :class:`FittedDataDriven`, its credit per path and its diagnostics (mechanism,
form weights, coefficients)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import polars as pl

from ...kernels import logistic as k
from ..fitted import FittedModel
from .fixed_form import ConversionModel
from .journey_model import JourneyModel

if TYPE_CHECKING:
    from ...paths import PathTable


@dataclass(frozen=True, eq=False, repr=False)
class FittedDataDriven(FittedModel):
    """A fitted :class:`DataDriven` model: ``channel_credit``, the conversion model and its diagnostics.

    Made by :meth:`DataDriven.fit`. Its attributes are :class:`FittedModel`'s and those listed under
    Attributes.

    Parameters
    ----------
    model, channel_credit, paths, replicates, baseline_conversions, balance, credit_gap
        As :class:`~optiq_engine.models.FittedModel`.
    conversion_model, path_phi, form_selection, mixture, experiment_checks
        The fields described under Attributes (default None, None, None, ``()``, None).
    sampled_paths
        Paths whose Shapley values were estimated from sampled orderings (more than
        :data:`~optiq_engine.kernels.logistic.EXACT_MAX_CHANNELS` distinct channels) rather than exactly;
        default 0.

    Attributes
    ----------
    conversion_model
        The fitted conversion model (``form="auto"``: the candidate with the largest BIC weight).
    path_phi
        Shapley values per (path, distinct channel) (``form="auto"``: the weighted average of the candidates').
    form_selection
        ``form="auto"``: every candidate's form, decay, saturation, half_life_days (None: no decay in time),
        own_half_lives (the channels with their own half-lives in days, ``"video 12, email 2.1"``; None:
        none), pairs (its pair and position terms, "" for none), log_likelihood, parameters, bic, weight and the
        journeys it was fitted on (docs/data_driven.md §6.1).
    mixture
        ``form="auto"``: ``(weight, candidate)`` of the candidates averaged in the credit.
    experiment_checks
        With experiments: per test, its result and error, the holdout effect over the same journeys of the fit
        without experiments (``observational_incremental``: what the data alone say) and of the calibrated
        one (``model_incremental``), ``z`` and ``journeys``.
    history
        The journeys the fit read: ``"journeys"`` (whole first journeys) or ``"windows"`` (their lookback
        windows); with ``fit_on="auto"`` the one of larger ``history_loglik``; None for a table given to
        ``fit`` alone (``fit_paths``), whose history the fit cannot know.
    credit_before_lookback
        After ``attribute()``: the fraction of the conversions' expected credit under the fit that belongs to
        channels seen only before the lookback, which no link credits (docs/data_driven.md §5); 0 before.
    history_loglik
        ``fit_on="auto"``: per history, the conversion log-likelihood of the reference model fitted on it
        (:func:`~optiq_engine.models.data_driven.model.reference_loglik`), over the same journeys; None
        otherwise.
    """

    conversion_model: ConversionModel | JourneyModel | None = None
    path_phi: np.ndarray | None = None
    sampled_paths: int = 0
    form_selection: pl.DataFrame | None = None
    mixture: tuple[tuple[float, JourneyModel], ...] = ()
    experiment_checks: pl.DataFrame | None = None
    history: str | None = None
    credit_before_lookback: float = 0.0
    history_loglik: dict[str, float] | None = None

    @property
    def mechanism(self) -> str:
        """How conversions happen according to the fit: the form (and decay) with the largest weight."""
        m = self.conversion_model
        if self.paths.height == 0:
            return "none: no journeys to fit on"
        if float(self.paths.conversions.sum()) == 0:  # nothing to tell how conversions happen
            return "none: no conversion to fit on"
        if isinstance(m, JourneyModel):
            return m.label(self.paths.channels)
        assert m is not None
        return {"touch": "per-touch hazard", "journey": "journey-end decision"}[m.form] + " (form chosen by the user)"

    @property
    def mechanism_weight(self) -> float:
        """BIC weight of :attr:`mechanism` among the candidates (1.0 when the form was given)."""
        if self.form_selection is None:
            return 1.0
        return float(cast(float, self.form_selection.get_column("weight").max()))

    @property
    def form_weights(self) -> dict[str, float]:
        """Total BIC weight of each form (``touch``, ``journey``, ``both``) over the decays."""
        if self.form_selection is None:
            return {}
        agg = self.form_selection.group_by("form").agg(pl.col("weight").sum())
        return dict(sorted(agg.iter_rows(), key=lambda r: -r[1]))

    @property
    def baseline_rate(self) -> float:
        """σ(b): the conversion rate (per touch for a hazard form) with no channel effect."""
        assert self.conversion_model is not None
        return float(1.0 / (1.0 + np.exp(-self.conversion_model.intercept)))

    @property
    def coefficients(self) -> pl.DataFrame:
        """``term``, ``coef`` (and ``std_error`` for the given forms; ``part`` for ``form="auto"``)."""
        assert self.conversion_model is not None
        return self.conversion_model.coefficients(self.paths.channels)

    def path_probability(self, table: PathTable) -> np.ndarray:
        """Per path row of ``table`` (and a last row 1), the model's conversion probability ``p(x)``.

        Parameters
        ----------
        table
            A path table: the fitted one, or another over any channels (a partition's; the coefficients are
            mapped by channel name, 0 for a channel the fit never saw).

        Returns
        -------
        numpy.ndarray
            float64 ``[P + 1]``; the last row (an empty path) is 1.
        """
        m = self.conversion_model
        assert m is not None
        if self.mixture:
            p = sum(w * c.for_channels(table.channels, self.paths.channels).predict(table) for w, c in self.mixture)
        else:
            p = self._on(table).predict(table)
        return np.append(np.asarray(p, dtype=np.float64), 1.0)

    def _on(self, table: PathTable) -> ConversionModel:
        """The fitted form's model with its coefficients mapped to ``table``'s channels by name."""
        m = self.conversion_model
        assert isinstance(m, ConversionModel)
        if table is self.paths or table.channels == self.paths.channels:
            return m
        beta = dict(zip(self.paths.channels, m.beta.tolist(), strict=True))
        return ConversionModel(
            m.intercept,
            np.array([beta.get(c, 0.0) for c in table.channels]),
            m.hessian,
            m.rho,
            k.count_features(table.offsets, table.codes, len(table.channels), m.rho or 0.0),
            m.form,
        )

    def path_shares(self, table: PathTable | None = None) -> np.ndarray:
        """``max(φ, 0)`` per (path, channel code) of ``table`` (default: the fitted one) as a dense
        ``[P + 1, C]`` matrix (last row: zeros, for journeys with an empty path).

        Parameters
        ----------
        table
            A path table over any channels (a partition's: its Shapley values are computed with the fitted
            model, coefficients mapped by channel name); default None: the fitted table, whose values are
            stored.

        Returns
        -------
        numpy.ndarray
            float64 ``[P + 1, C]`` for ``table``'s ``P`` path rows and ``C`` channels.
        """
        m = self.conversion_model
        assert m is not None and self.path_phi is not None
        if table is None or table is self.paths:
            table, phi = self.paths, self.path_phi
        elif self.mixture:  # form="auto": the same candidates and weights on another table
            phi = np.zeros(0)
            for w, cand in self.mixture:
                other_c = cand.for_channels(table.channels, self.paths.channels)
                cphi, _ = other_c.path_shapley(table, samples=self.model.samples, seed=self.model.seed)  # type: ignore[attr-defined]
                phi = w * cphi if phi.shape[0] == 0 else phi + w * cphi
        else:  # another table (a partition): the same model, its coefficients mapped by channel name
            phi, _ = self._on(table).path_shapley(table, samples=self.model.samples, seed=self.model.seed)  # type: ignore[attr-defined]
        off, code, _ = k.count_features(table.offsets, table.codes, len(table.channels), 0.0)
        out = np.zeros((off.shape[0], len(table.channels)))
        rows = np.repeat(np.arange(off.shape[0] - 1), np.diff(off))
        out[rows, code] = np.maximum(phi, 0.0)
        return out
