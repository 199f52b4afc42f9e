"""DATA_DRIVEN: a fitted conversion model decomposed per journey by exact Shapley values (docs/data_driven.md §6).

:class:`DataDriven`, the model (its options) and its fit: a form given by the user, or ``form="auto"``'s
choice among candidates, averaged by their BIC weights."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import polars as pl

from ...errors import ConfigError
from ...experiments import Experiment
from ...kernels import journey_model as jm
from ...kernels import logistic as k
from ..base import register_model
from ..fitted import DataDrivenModel, bootstrap_shares, credit_frame, normalise
from .bootstrap import _bootstrap_auto
from .experiments import _experiment_frame, _experiment_targets
from .fitted import FittedDataDriven
from .fixed_form import ConversionModel, _newton, logistic_terms
from .form_choice import _MIN_WEIGHT, AUTO_HALF_LIVES, choose_candidates
from .journey_model import _incremental, step_decays

if TYPE_CHECKING:
    from ...config import AttributionConfig
    from ...paths import PathTable


#: The journeys DATA_DRIVEN can be fitted on (docs/data_driven.md §1).
FIT_ON = ("auto", "journeys", "windows")


@register_model
@dataclass(frozen=True)
class DataDriven(DataDrivenModel):
    """A conversion model fitted on the journeys, decomposed per journey by exact Shapley values.

    Parameters
    ----------
    form
        ``"auto"`` (default): a model of the whole observed journey (its length included) in which each
        touch may convert (a hazard), the journey may end, and an ending journey decides once; the
        touch-only, end-only and nested forms, each with a few decays and saturations of the exposure stock
        and channel effects constrained to be >= 0, are compared by BIC and averaged by their weights
        (docs/data_driven.md §6.1; required by ``experiments``). Or one fixed form: ``"touch"``: every touch
        is a decision point,
        ``h_j = σ(b + Σ_c β_c f(K_c(j)))`` and ``p(journey) = 1 - Π_j (1 - h_j)`` (a discrete-time hazard
        model); ``"journey"``: one decision per journey, ``p = σ(b + Σ_c β_c f(k_c))``.
    l2
        L2 penalty on the channel coefficients (in units of journeys; the intercept is not penalised).
    saturation
        ``None`` for ``f(k) = k``, or ``rho`` in (0, 1) for ``f(k) = (1 - rho**k) / (1 - rho)`` (``"touch"``
        and ``"journey"`` only).
    samples
        Orderings sampled for journeys with more than 20 distinct channels.
    experiments
        Lift tests (:class:`~optiq_engine.Experiment`; a single one is a list of one) that the fit is made to
        agree with: the model's holdout effect of each tested channel over the test's period is set to meet
        the test's result within its error; the bias the tests reveal is spread to the untested channels as
        intent, along the main axis of the users' exposure, and the rest refitted (docs/data_driven.md §6.1).
    fit_on
        The history each journey is fitted on (docs/data_driven.md §1); the journeys are each group's first
        (up to its first conversion; its whole history when it never converts): ``"journeys"``: whole, every
        touchpoint, older than the lookback or not; ``"windows"``: within the lookback; ``"auto"`` (default):
        the history in which a reference model (the journey-end logistic on counts) predicts better which
        journeys convert (``fitted.history``). Either way only touchpoints within the lookback are credited.
    transform
        Path transform before fitting; default ``"frequency"`` here (the other data-driven models default to
        ``"exposure"``), and a model given by name keeps it (``path_transform`` does not apply).
    remove_direct_if_not_all, bootstrap, level, seed
        Shared by every data-driven model (:class:`~optiq_engine.models.DataDrivenModel`); ``seed`` also keys
        the sampled orderings and the thinning of ``form="auto"``.

    Raises
    ------
    ConfigError
        An unknown ``form`` or ``fit_on``; ``l2`` not a number >= 0; ``saturation`` not None or a float in (0, 1), or given
        with ``form="auto"``; ``samples`` not an integer >= 2; ``experiments`` not :class:`Experiment` objects,
        or given with a fixed form; or a shared parameter is invalid.
    """

    name = "DATA_DRIVEN"
    transform: str = "frequency"
    form: str = "auto"
    l2: float = 1.0
    saturation: float | None = None
    samples: int = 2_000
    experiments: tuple[Experiment, ...] = ()
    fit_on: str = "auto"

    config_fields: ClassVar[dict[str, str]] = {
        **{name: source for name, source in DataDrivenModel.config_fields.items() if name != "transform"},
        "experiments": "experiments",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.form not in ("auto", "touch", "journey"):
            raise ConfigError(f"DATA_DRIVEN form must be 'auto', 'touch' or 'journey', got {self.form!r}")
        if self.fit_on not in FIT_ON:
            raise ConfigError(f"DATA_DRIVEN fit_on must be one of {', '.join(map(repr, FIT_ON))}, got {self.fit_on!r}")
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or not self.l2 >= 0:
            raise ConfigError(f"DATA_DRIVEN l2 must be a number >= 0, got {self.l2!r}")
        if self.saturation is not None and not (isinstance(self.saturation, float) and 0 < self.saturation < 1):
            raise ConfigError(f"DATA_DRIVEN saturation must be None or a float in (0, 1), got {self.saturation!r}")
        if self.saturation is not None and self.form == "auto":
            raise ConfigError(
                "DATA_DRIVEN saturation applies to form='touch' or 'journey' (form='auto', the default, chooses "
                f"its own): DataDriven(form='touch', saturation={self.saturation!r})"
            )
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 2:
            raise ConfigError(f"DATA_DRIVEN samples must be an integer >= 2, got {self.samples!r}")
        given = self.experiments
        experiments = (given,) if isinstance(given, Experiment) else tuple(given or ())
        bad = [e for e in experiments if not isinstance(e, Experiment)]
        if bad:
            raise ConfigError(f"DATA_DRIVEN experiments must be oq.Experiment objects, got {bad[0]!r}")
        if experiments and self.form != "auto":
            raise ConfigError("DATA_DRIVEN experiments need form='auto': DataDriven(form='auto', experiments=[...])")
        object.__setattr__(self, "experiments", experiments)

    @classmethod
    def from_config(cls, config: AttributionConfig) -> DataDriven:
        """The model given by name: options from ``config``; with ``config.experiments``, ``form="auto"``.

        Parameters
        ----------
        config
            The run's options: ``remove_direct_if_not_all``, ``bootstrap``, ``bootstrap_level``, ``seed`` and
            ``experiments`` (not ``path_transform``: DATA_DRIVEN keeps ``"frequency"``).

        Returns
        -------
        DataDriven

        Raises
        ------
        ConfigError
            A value taken from ``config`` is invalid (e.g. an experiment that is not an :class:`Experiment`).
        """
        options = {name: getattr(config, source) for name, source in cls.config_fields.items()}
        if options.get("experiments"):
            options["form"] = "auto"
        return cls(**options)

    @property
    def timed(self) -> bool:
        """Whether the fit reads timed path tables (the gaps between touches: ``form="auto"``'s half-lives in
        days, docs/data_driven.md §2)."""
        return self.form == "auto"

    @property
    def wants_periods(self) -> bool:
        """Whether a fit needs each experiment's journeys (``periods`` of :meth:`fit`)."""
        return bool(self.experiments)

    def fit(
        self,
        table: PathTable,
        *,
        direct_channels: tuple[str, ...] = ("direct",),
        periods: list[tuple[np.ndarray, np.ndarray]] | None = None,
        windows: PathTable | None = None,
        window_periods: list[tuple[np.ndarray, np.ndarray]] | None = None,
        reference: PathTable | None = None,
    ) -> FittedDataDriven:
        """Fit on a path table; ``periods`` (one per experiment): the converting and non-converting journeys
        of each row that fall in the experiment's period (``None``: every journey of the table).

        Parameters
        ----------
        table
            The path table (already transformed with ``self.transform``); with ``bootstrap``, equal paths are
            merged first (:meth:`PathTable.merged`). With ``fit_on="auto"``: the whole first journeys.
        direct_channels
            Not used by DATA_DRIVEN (the common signature of :meth:`DataDrivenModel.fit`).
        periods
            Per experiment, ``(conversions, nulls)`` aligned with the rows of ``table``
            (:func:`~optiq_engine.models.data_driven.experiments.experiment_periods`); default None.
        windows, window_periods, reference
            With ``fit_on="auto"``: the same journeys' lookback windows (``path_tables``'
            ``"DATA_DRIVEN/windows"``), their experiment periods, and ``table`` counted over the journeys the
            windows hold (``"DATA_DRIVEN/reference"``; default: ``table``); the history in which a reference
            model (the journey-end logistic on touch counts) predicts those journeys' conversions better is
            fitted (docs/data_driven.md §1). Default None: ``table`` only, whose history is not known
            (``history`` None).

        Returns
        -------
        FittedDataDriven
            With no journey at all (no conversion and no null), a fit that credits no channel.

        Raises
        ------
        ModelError
            The conversion model does not converge; an experiment's channel is in no fitted path; or the
            paths' conversion values sum to 2**63 micros or more.
        """
        if self.fit_on != "auto" or windows is None:
            return replace(self._fit_table(table, periods), history=None if self.fit_on == "auto" else self.fit_on)
        whole = reference if reference is not None else table
        with ThreadPoolExecutor(max_workers=2) as pool:  # the kernels release the GIL: the two side by side
            both = list(pool.map(lambda t: reference_loglik(t, self.l2), (whole, windows)))
        loglik = {"journeys": both[0], "windows": both[1]}
        history = max(loglik, key=lambda h: loglik[h])  # ties: "journeys" (first)
        chosen, chosen_periods = (table, periods) if history == "journeys" else (windows, window_periods)
        return replace(self._fit_table(chosen, chosen_periods), history=history, history_loglik=loglik)

    def _fit_table(self, table: PathTable, periods: list[tuple[np.ndarray, np.ndarray]] | None) -> FittedDataDriven:
        """:meth:`fit` on one table."""
        if self.bootstrap:
            table = table.merged()
        if float(table.conversions.sum() + table.nulls.sum()) == 0:
            return self._nothing_to_fit(table)
        if self.form == "auto":
            return self._fit_auto(table, periods)
        model = ConversionModel.fit(table, l2=self.l2, rho=self.saturation, form=self.form)
        phi, sampled = model.path_shapley(table, samples=self.samples, seed=self.seed)
        incremental = model.incremental(table, phi)
        shares = normalise(incremental)

        def shares_of(conv: np.ndarray, null: np.ndarray) -> np.ndarray:
            resampled = ConversionModel.fit(table, l2=self.l2, rho=self.saturation, form=self.form, counts=(conv, null))
            rphi, _ = resampled.path_shapley(table, samples=self.samples, seed=self.seed)
            return normalise(resampled.incremental(table, rphi, counts=(conv, null)))

        replicates = bootstrap_shares(self, table, shares_of)
        frame = credit_frame(table, shares, ("incremental_conversions", incremental), replicates, self.level)
        return FittedDataDriven(
            model=self,
            channel_credit=frame,
            paths=table,
            replicates=replicates,
            conversion_model=model,
            path_phi=phi,
            sampled_paths=int(sampled),
        )

    def _nothing_to_fit(self, table: PathTable) -> FittedDataDriven:
        """No journey (a quiet day of a nightly run, every touchpoint outside the window): no channel is
        credited, nothing is fitted; the conversions stay unattributed as for every model."""
        n_codes = len(table.channels)
        feats = k.count_features(table.offsets, table.codes, n_codes, 0.0)
        model = ConversionModel(0.0, np.zeros(n_codes), np.eye(n_codes + 1), None, feats, "touch")
        zeros = np.zeros(n_codes)
        replicates = np.zeros((self.bootstrap, n_codes))
        frame = credit_frame(table, zeros, ("incremental_conversions", zeros), replicates, self.level)
        return FittedDataDriven(
            model=self,
            channel_credit=frame,
            paths=table,
            replicates=replicates,
            conversion_model=model,
            path_phi=np.zeros(0),
        )

    def _fit_auto(self, table: PathTable, periods: list[tuple[np.ndarray, np.ndarray]] | None) -> FittedDataDriven:
        n_codes = len(table.channels)
        counts = (table.conversions, table.nulls)
        targets = _experiment_targets(self.experiments, table, periods)
        # pair effects are not calibrated by experiments: no pair candidate where tests are given
        candidates, weights = choose_candidates(table, l2=float(self.l2), seed=self.seed, pairs=not targets)
        observed = candidates
        if targets:
            candidates = [
                c.calibrated(table, targets, l2=float(self.l2)) if w > _MIN_WEIGHT else c
                for c, w in zip(candidates, weights, strict=True)
            ]
        kept = [(w, c) for w, c in zip(weights, candidates, strict=True) if w > _MIN_WEIGHT]
        phi = np.zeros(0)
        sampled = 0
        for w, c in kept:
            cphi, cs = c.path_shapley(table, samples=self.samples, seed=self.seed)
            phi = w * cphi if phi.shape[0] == 0 else phi + w * cphi
            sampled = max(sampled, int(cs))
        total_w = sum(w for w, _ in kept)
        phi = phi / total_w
        incremental = _incremental(table, phi, counts)
        shares = normalise(incremental)
        replicates = np.empty((self.bootstrap, n_codes))
        if self.bootstrap:
            replicates = _bootstrap_auto(self, table, candidates, weights, targets)
        frame = credit_frame(table, shares, ("incremental_conversions", incremental), replicates, self.level)
        best = candidates[int(np.argmax(weights))]
        selection = pl.DataFrame(  # the choice, made without the experiments (docs/data_driven.md §6.1)
            {
                "form": [c.form for c in observed],
                "decay": [c.rho for c in observed],
                "saturation": [c.sat for c in observed],
                "half_life_days": [c.half_life if math.isfinite(c.half_life) else None for c in observed],
                "own_half_lives": [c.half_lives_label(table.channels) or None for c in observed],
                "pairs": [", ".join(c.pair_names(table.channels)) for c in observed],
                "log_likelihood": [-c.nll for c in observed],
                "parameters": [c.n_params for c in observed],
                "bic": [c.bic for c in observed],
                "weight": weights,
                "journeys": [c.n_journeys for c in observed],
            }
        ).sort(["weight", "bic"], descending=[True, False])  # BICs of refitted and sample fits differ in scale
        checks = _experiment_frame(self.experiments, targets, candidates, observed, weights, table)
        return FittedDataDriven(
            model=self,
            channel_credit=frame,
            paths=table,
            replicates=replicates,
            conversion_model=best,
            path_phi=phi,
            sampled_paths=sampled,
            form_selection=selection,
            mixture=tuple((w / total_w, c) for w, c in kept),
            experiment_checks=checks,
        )


def reference_loglik(table: PathTable, l2: float) -> float:
    """The better of :func:`counts_loglik` and, on a timed table, :func:`decayed_loglik` at each half-life of
    ``AUTO_HALF_LIVES``."""
    best = counts_loglik(table, l2)
    if table.gaps is None or float(table.conversions.sum() + table.nulls.sum()) == 0:
        return best
    return max(best, *(decayed_loglik(table, l2, h) for h in AUTO_HALF_LIVES))


def decayed_loglik(table: PathTable, l2: float, half_life: float) -> float:
    """As :func:`counts_loglik` with each touch's count halving every ``half_life`` days of its age at the
    path's last touch (the features of the journey-end part of kernels/journey_model.py)."""
    decay = step_decays(table, 1.0, half_life)
    return _logistic_loglik(table, jm.end_stocks(table.offsets, table.codes, len(table.channels), decay, 1.0), l2)


def counts_loglik(table: PathTable, l2: float) -> float:
    """``Σ conversions · log p(x) + nulls · log(1 - p(x))`` of the journey-end logistic model on touch counts
    fitted on ``table`` (penalised as DATA_DRIVEN's ``l2``): how well a history's paths predict which
    journeys convert, under one model for every history (what ``fit_on="auto"`` compares;
    docs/data_driven.md §1). 0 with no journey."""
    return _logistic_loglik(table, k.count_features(table.offsets, table.codes, len(table.channels), 0.0), l2)


def _logistic_loglik(table: PathTable, feats: tuple[np.ndarray, np.ndarray, np.ndarray], l2: float) -> float:
    """The penalised logistic fit of the paths' conversions on ``feats`` (count_features' layout): its
    log-likelihood without the penalty."""
    conv, null = table.conversions, table.nulls
    total = float(conv.sum() + null.sum())
    if total == 0:
        return 0.0
    x0 = np.zeros(len(table.channels) + 1)
    rate = min(max(float(conv.sum()) / total, 1e-9), 1 - 1e-9)
    x0[0] = np.log(rate / (1 - rate))
    x, _ = _newton(lambda x, h: logistic_terms(x, feats, conv, null, float(l2), h), x0)  # convex: a few steps
    return -float(logistic_terms(x, feats, conv, null, 0.0, False)[0])  # the log-likelihood without the penalty
