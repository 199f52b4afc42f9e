"""DATA_DRIVEN: a fitted conversion model decomposed per journey by exact Shapley values (docs/data_driven.md §6)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numba
import numpy as np
import polars as pl
import scipy.linalg
import scipy.optimize
import scipy.sparse

from ..errors import ConfigError, ModelError
from ..experiments import Experiment
from ..kernels import journey_model as jm
from ..kernels import logistic as k
from .base import register_model
from .fitted import DataDrivenModel, FittedModel, credit_frame, normalise

if TYPE_CHECKING:
    from ..config import AttributionConfig
    from ..paths import PathTable

__all__ = ["DataDriven", "FittedDataDriven", "ConversionModel", "JourneyModel", "AUTO_DECAYS", "AUTO_SHAPES"]

#: Candidate per-touch decays of the exposure stock that ``form="auto"`` chooses among (1: touch counts).
AUTO_DECAYS = (1.0, 0.7, 0.4)
#: Saturations of repeats among the candidates of ``form="auto"`` (with counts, ``rho = 1``).
AUTO_SATURATIONS = (0.7, 0.4)
#: The stock shapes ``(rho, sat)`` of the candidates: the decays with no saturation, the saturations with counts.
AUTO_SHAPES = tuple((rho, 1.0) for rho in AUTO_DECAYS) + tuple((1.0, sat) for sat in AUTO_SATURATIONS)


def shape_label(rho: float, sat: float) -> str:
    """``"touch counts"``, ``"stock decaying x0.7 per touch"`` or ``"repeats saturating x0.7"``."""
    parts = [f"stock decaying x{rho:g} per touch"] if rho != 1.0 else []
    parts += [f"repeats saturating x{sat:g}"] if sat != 1.0 else []
    return ", ".join(parts) or "touch counts"


#: The forms of the whole-journey model that ``form="auto"`` compares.
AUTO_FORMS = ("touch", "journey", "both")  # "both" at the best pure decay only


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
        Lift tests (:class:`~optiq_engine.Experiment`) that the fit is penalised to agree with: the model's
        holdout effect of each tested channel over the test's period is pulled to the test's result within
        its standard error.
    """

    name = "DATA_DRIVEN"
    transform: str = "frequency"
    form: str = "auto"
    l2: float = 1.0
    saturation: float | None = None
    samples: int = 2_000
    experiments: tuple[Experiment, ...] = ()

    config_fields: ClassVar[dict[str, str]] = {
        **{name: source for name, source in DataDrivenModel.config_fields.items() if name != "transform"},
        "experiments": "experiments",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.form not in ("auto", "touch", "journey"):
            raise ConfigError(f"DATA_DRIVEN form must be 'auto', 'touch' or 'journey', got {self.form!r}")
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
        experiments = tuple(self.experiments or ())
        bad = [e for e in experiments if not isinstance(e, Experiment)]
        if bad:
            raise ConfigError(f"DATA_DRIVEN experiments must be oq.Experiment objects, got {bad[0]!r}")
        if experiments and self.form != "auto":
            raise ConfigError("DATA_DRIVEN experiments need form='auto': DataDriven(form='auto', experiments=[...])")
        object.__setattr__(self, "experiments", experiments)

    @classmethod
    def from_config(cls, config: AttributionConfig) -> DataDriven:
        """The model given by name: options from ``config``; with ``config.experiments``, ``form="auto"``."""
        options = {name: getattr(config, source) for name, source in cls.config_fields.items()}
        if options.get("experiments"):
            options["form"] = "auto"
        return cls(**options)

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
    ) -> FittedDataDriven:
        """Fit on a path table; ``periods`` (one per experiment): the converting and non-converting journeys
        of each row that fall in the experiment's period (``None``: every journey of the table)."""
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
        replicates = np.empty((self.bootstrap, len(table.channels)))
        if self.bootstrap:
            from ..kernels.bootstrap import poisson_counts

            for r in range(self.bootstrap):
                conv, null = poisson_counts(table.hashes, table.conversions, table.nulls, self.seed, r)
                resampled = ConversionModel.fit(
                    table, l2=self.l2, rho=self.saturation, form=self.form, counts=(conv, null)
                )
                rphi, _ = resampled.path_shapley(table, samples=self.samples, seed=self.seed)
                replicates[r] = normalise(resampled.incremental(table, rphi, counts=(conv, null)))
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
        return FittedDataDriven(model=self, channel_credit=frame, paths=table, replicates=replicates,
                                conversion_model=model, path_phi=np.zeros(0))  # fmt: skip

    def _fit_auto(self, table: PathTable, periods: list[tuple[np.ndarray, np.ndarray]] | None) -> FittedDataDriven:
        n_codes = len(table.channels)
        counts = (table.conversions, table.nulls)
        candidates, weights = choose_candidates(table, l2=float(self.l2), seed=self.seed)
        targets = _experiment_targets(self.experiments, table, periods)
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
        selection = pl.DataFrame(
            {
                "form": [c.form for c in candidates],
                "decay": [c.rho for c in candidates],
                "saturation": [c.sat for c in candidates],
                "log_likelihood": [-c.nll for c in candidates],
                "parameters": [c.n_params for c in candidates],
                "bic": [c.bic for c in candidates],
                "weight": weights,
                "journeys": [c.n_journeys for c in candidates],
            }
        ).sort("bic")
        checks = _experiment_frame(self.experiments, targets, candidates, weights, table)
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


class ConversionModel:
    """``p(x) = σ(b + Σ_c β_c f(k_c(x)))`` fitted by penalised maximum likelihood on a path table."""

    def __init__(
        self, intercept: float, beta: np.ndarray, hessian: np.ndarray, rho: float | None, features, form: str
    ) -> None:
        self.intercept = intercept
        self.beta = beta
        self.hessian = hessian
        self.rho = rho
        self.features = features  # (feat_offsets, feat_code, feat_value) of the table it was fitted on
        self.form = form

    @classmethod
    def fit(
        cls,
        table: PathTable,
        *,
        l2: float,
        rho: float | None,
        form: str = "touch",
        counts: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ConversionModel:
        n_codes = len(table.channels)
        feats = k.count_features(table.offsets, table.codes, n_codes, rho or 0.0)
        conv, null = counts if counts is not None else (table.conversions, table.nulls)
        total = conv.sum() + null.sum()
        if total == 0:
            raise ModelError("DATA_DRIVEN: no journeys to fit on")
        rate = min(max(conv.sum() / total, 1e-9), 1 - 1e-9)
        x0 = np.zeros(n_codes + 1)
        x0[0] = np.log(rate / (1 - rate))
        if form == "touch":
            touches = float(np.dot(np.diff(table.offsets), conv + null))
            per_touch = min(max(conv.sum() / max(touches, 1.0), 1e-9), 1 - 1e-9)
            x0[0] = np.log(per_touch / (1 - per_touch))
            terms = lambda x, h: k.hazard_terms(x, table.offsets, table.codes, conv, null, float(l2), rho or 0.0, h)  # noqa: E731
            params, hessian = _newton(terms, x0)
        else:
            res = scipy.optimize.minimize(
                k.logistic_loss_grad, x0, args=(*feats, conv, null, float(l2)), jac=True, method="L-BFGS-B",
                options={"maxiter": 1000, "gtol": 1e-9, "ftol": 1e-15},
            )  # fmt: skip
            if not np.all(np.isfinite(res.x)):
                raise ModelError(f"DATA_DRIVEN: the conversion model did not converge ({res.message})")
            params, hessian = res.x, _hessian(res.x, feats, conv + null, n_codes, l2)
        return cls(float(params[0]), params[1:].copy(), hessian, rho, feats, form)

    def predict(self, table: PathTable) -> np.ndarray:
        """p(x) of every path row of ``table`` (its channels those of the fit), in the model's form."""
        if self.form == "touch":
            return k.hazard_predict(table.offsets, table.codes, self.beta, self.intercept, self.rho or 0.0)
        off, code, value = k.count_features(table.offsets, table.codes, len(table.channels), self.rho or 0.0)
        rows = np.repeat(np.arange(table.height), np.diff(off))
        z = self.intercept + np.bincount(rows, weights=self.beta[code] * value, minlength=table.height)
        return 1.0 / (1.0 + np.exp(-z))

    def path_shapley(self, table: PathTable, *, samples: int, seed: int) -> tuple[np.ndarray, int]:
        """Shapley values per (path, distinct channel), aligned with the features."""
        if self.form == "touch":
            return k.hazard_shapley(
                table.offsets, table.codes, self.beta, self.intercept, self.rho or 0.0, table.hashes, samples, seed
            )
        off, code, value = self.features
        return k.path_shapley(off, code, value, self.beta, self.intercept, table.hashes, samples, seed)

    def incremental(
        self, table: PathTable, phi: np.ndarray, counts: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Σ over journeys of φ per channel: the expected incremental conversions."""
        off, code, _ = self.features
        conv, null = counts if counts is not None else (table.conversions, table.nulls)
        n_rows = np.repeat(conv + null, np.diff(off))
        return np.bincount(code, weights=phi * n_rows, minlength=len(table.channels))

    def coefficients(self, channels: tuple[str, ...]) -> pl.DataFrame:
        """``term``, ``coef`` and ``std_error`` (from the inverse penalised Hessian)."""
        try:
            cov = np.linalg.inv(self.hessian)
            se = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            se = np.full(self.hessian.shape[0], np.nan)
        return pl.DataFrame(
            {"term": ["(intercept)", *channels], "coef": [self.intercept, *self.beta.tolist()], "std_error": se}
        )


def _newton(terms, x0: np.ndarray, *, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Minimise a convex loss by damped Newton steps: ``terms(x, hessian?) -> (loss, grad, hess)``."""
    x = x0
    loss, grad, hess = terms(x, True)
    for _ in range(max_iter):
        try:
            step = scipy.linalg.solve(hess, grad, assume_a="pos")
        except (np.linalg.LinAlgError, ValueError):
            step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        while True:
            cand = x - t * step
            new_loss = terms(cand, False)[0]
            if new_loss <= loss or t < 1e-10:
                break
            t *= 0.5
        x = cand
        decrease = loss - new_loss
        loss, grad, hess = terms(x, True)
        if np.abs(grad).max() < 1e-9 * max(1.0, abs(loss)) or 0 <= decrease < 1e-13 * max(1.0, abs(loss)):
            break
    if not np.all(np.isfinite(x)):
        raise ModelError("DATA_DRIVEN: the conversion model did not converge")
    return x, hess


def _damped_newton(terms, x0: np.ndarray, scale: float, *, max_iter: int = 100) -> np.ndarray:
    """Minimise by Newton steps on ``H + λI`` (λ = 0 when ``H`` is positive definite, else grown until it
    is: Levenberg-Marquardt damping) with backtracking; ``terms(x, hessian?) -> (loss, grad, hess)``."""
    x = x0
    loss, grad, hess = terms(x, True)
    eye = np.eye(x.shape[0])
    for _ in range(max_iter):
        lam = 0.0
        floor = 1e-9 * max(float(np.abs(np.diag(hess)).max()), 1.0)
        while True:
            try:
                factor = scipy.linalg.cho_factor(hess + lam * eye)
                break
            except np.linalg.LinAlgError:
                lam = max(4.0 * lam, floor)
        step = scipy.linalg.cho_solve(factor, grad)
        t = 1.0
        while True:
            cand = x - t * step
            new_loss = terms(cand, False)[0]
            if new_loss <= loss or t < 1e-10:
                break
            t *= 0.5
        if not new_loss <= loss:
            break
        decrease = loss - new_loss
        x = cand
        loss, grad, hess = terms(x, True)
        if np.abs(grad).max() < 1e-8 * scale or decrease < 1e-12 * scale:
            break
    if not np.all(np.isfinite(x)):
        raise ModelError("DATA_DRIVEN: the conversion model did not converge")
    return x


def _hessian(params: np.ndarray, feats, n: np.ndarray, n_codes: int, l2: float) -> np.ndarray:
    off, code, value = feats
    rows = np.repeat(np.arange(off.shape[0] - 1), np.diff(off))
    x = scipy.sparse.csr_matrix((value, (rows, code + 1)), shape=(off.shape[0] - 1, n_codes + 1)).tolil()
    x[:, 0] = 1.0
    x = x.tocsr()
    z = x @ params
    p = 1.0 / (1.0 + np.exp(-z))
    h = (x.T @ scipy.sparse.diags(n * p * (1 - p)) @ x).toarray()
    h[np.arange(1, n_codes + 1), np.arange(1, n_codes + 1)] += l2
    return h


# --- form="auto": the whole-journey model (kernels/journey_model.py) -------------------------------------

_MIN_WEIGHT = 1e-3  # candidates below this BIC weight are left out of the average
#: Journeys above which ``form="auto"`` chooses its form on a thinned sample of this size.
SELECT_JOURNEYS = 200_000
_THINNING_REPLICATE = 0x5E1EC7  # the Poisson stream of the thinning (not a bootstrap replicate number)
_REFIT_STEPS = 6  # Newton steps (per active set) of the full-data refit after the choice on a sample
_PLAUSIBLE_BIC = 20.0  # the bootstrap refits the candidates within this BIC of the best (odds above e^-10)
_IMPOSE = 0.02  # an experiment's penalty uses this fraction of its standard error: the result is imposed
_PARALLEL_ROWS = 100_000  # path rows from which the likelihood is summed in parallel


class JourneyModel:
    """One fitted candidate of ``form="auto"``: the whole-journey model with its form and stock decay.

    Attributes
    ----------
    params
        ``[b_h, β_h (C), b_p, β_p (C), g (N_BUCKETS), γ (C)]`` (kernels/journey_model.py).
    form
        ``"touch"`` (hazard part only), ``"journey"`` (end decision only) or ``"both"``.
    rho
        Per-touch decay of the exposure stock (1: counts).
    sat
        Saturation of repeats: the k-th touch of a channel adds ``sat**(k-1)`` to its stock (1: none).
    nll
        Negative log-likelihood (without the penalty) on the fitted counts.
    n_params, n_journeys
        Free parameters and journeys, for ``bic = 2 nll + n_params log(n_journeys)``.
    """

    def __init__(
        self, params: np.ndarray, form: str, rho: float, nll: float, n_params: int, n_journeys: float, sat: float = 1.0
    ) -> None:
        self.params = params
        self.form = form
        self.rho = rho
        self.sat = sat
        self.nll = nll
        self.n_params = n_params
        self.n_journeys = n_journeys

    @property
    def use_h(self) -> bool:
        return self.form in ("touch", "both")

    @property
    def use_p(self) -> bool:
        return self.form in ("journey", "both")

    @property
    def bic(self) -> float:
        return 2.0 * self.nll + self.n_params * float(np.log(max(self.n_journeys, 2.0)))

    @property
    def n_codes(self) -> int:
        return (self.params.shape[0] - 2 - jm.N_BUCKETS) // 3

    @property
    def intercept(self) -> float:
        """The intercept of the part that carries the channel effects (touch part when present)."""
        return float(self.params[0] if self.use_h else self.params[1 + self.n_codes])

    @property
    def beta(self) -> np.ndarray:
        c = self.n_codes
        return self.params[1 : 1 + c].copy() if self.use_h else self.params[2 + c : 2 + 2 * c].copy()

    def label(self) -> str:
        names = {"touch": "per-touch hazard", "journey": "journey-end decision", "both": "hazard + journey-end"}
        return f"{names[self.form]}, {shape_label(self.rho, self.sat)}"

    def path_shapley(self, table: PathTable, *, samples: int, seed: int) -> tuple[np.ndarray, int]:
        """Shapley values per (path, distinct channel in first-occurrence order)."""
        phi, sampled = jm.nested_shapley(
            table.offsets,
            table.codes,
            self.params,
            self.rho,
            self.sat,
            self.use_h,
            self.use_p,
            table.hashes,
            samples,
            seed,
        )
        return phi, int(sampled)

    def predict(self, table: PathTable, *, drop: int = -1) -> np.ndarray:
        """P(convert | path) of every row of ``table`` (``drop``: a channel code whose effect is removed)."""
        return jm.nested_predict(
            table.offsets, table.codes, self.params, self.rho, self.sat, self.use_h, self.use_p, drop
        )

    def for_channels(self, channels: tuple[str, ...], fitted: tuple[str, ...]) -> JourneyModel:
        """The same model with its channel coefficients re-indexed for ``channels`` (0 for unseen ones)."""
        index = {c: i for i, c in enumerate(fitted)}
        c_old, c_new = len(fitted), len(channels)
        b = jm.N_BUCKETS
        params = np.zeros(2 + 3 * c_new + b)
        params[0] = self.params[0]
        params[1 + c_new] = self.params[1 + c_old]
        params[2 + 2 * c_new : 2 + 2 * c_new + b] = self.params[2 + 2 * c_old : 2 + 2 * c_old + b]
        for i, c in enumerate(channels):
            if c in index:
                params[1 + i] = self.params[1 + index[c]]
                params[2 + c_new + i] = self.params[2 + c_old + index[c]]
                params[2 + 2 * c_new + b + i] = self.params[2 + 2 * c_old + b + index[c]]
        return JourneyModel(params, self.form, self.rho, self.nll, self.n_params, self.n_journeys, self.sat)

    def coefficients(self, channels: tuple[str, ...]) -> pl.DataFrame:
        """``part`` (touch / journey / ending), ``term`` and ``coef`` of the parts in the model."""
        c = len(channels)
        rows: list[tuple[str, str, float]] = []
        if self.use_h:
            rows += [("touch", "(intercept)", float(self.params[0]))]
            rows += [("touch", ch, float(self.params[1 + i])) for i, ch in enumerate(channels)]
        if self.use_p:
            rows += [("journey", "(intercept)", float(self.params[1 + c]))]
            rows += [("journey", ch, float(self.params[2 + c + i])) for i, ch in enumerate(channels)]
        labels = ["1", "2", "3", "4", "5", "6", "7-8", "9-12", "13-20", "21+"]
        rows += [("ending", f"position {b}", float(self.params[2 + 2 * c + i])) for i, b in enumerate(labels)]
        rows += [
            ("ending", f"after {ch}", float(self.params[2 + 2 * c + jm.N_BUCKETS + i])) for i, ch in enumerate(channels)
        ]
        part, term, coef = zip(*rows, strict=True)
        return pl.DataFrame({"part": list(part), "term": list(term), "coef": list(coef)})

    def calibrated(self, table: PathTable, targets: list[_Target], *, l2: float) -> JourneyModel:
        """The model refitted with the experiments' Gaussian penalty ``Σ (L_e - target_e)² / (2 se_e²)``."""
        return _fit_one(table, self.form, self.rho, l2=l2, counts=(table.conversions, table.nulls),
                        start=self.params, targets=targets, sat=self.sat)  # fmt: skip


@dataclass(frozen=True)
class _Target:
    """An experiment resolved against a table: channel code, journeys of its period per row, result."""

    code: int
    weights: np.ndarray
    value: float
    std_error: float


def _active(form: str, n_codes: int) -> np.ndarray:
    """Indices of the parameters that ``form`` uses."""
    idx = list(range(2 + 2 * n_codes, 2 + 3 * n_codes + jm.N_BUCKETS))
    if form in ("touch", "both"):
        idx += list(range(0, 1 + n_codes))
    if form in ("journey", "both"):
        idx += list(range(1 + n_codes, 2 + 2 * n_codes))
    return np.array(sorted(idx), dtype=np.int64)


def _start(table: PathTable, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Starting point: empirical ending rates by position, the per-touch and per-journey conversion rates."""
    n_codes = len(table.channels)
    conv, null = counts
    n = conv + null
    lengths = np.diff(table.offsets)
    x = np.zeros(2 + 3 * n_codes + jm.N_BUCKETS)
    touches = float(np.dot(lengths, n))
    rate_t = min(max(conv.sum() / max(touches, 1.0), 1e-6), 1 - 1e-6)
    rate_j = min(max(conv.sum() / max(n.sum(), 1.0), 1e-6), 1 - 1e-6)
    x[0] = np.log(rate_t / (1 - rate_t))
    x[1 + n_codes] = np.log(rate_j / (1 - rate_j))
    m_max = int(lengths.max()) if lengths.shape[0] else 1
    at = np.bincount(lengths, weights=n, minlength=m_max + 2)  # journeys of each length
    reach = at[::-1].cumsum()[::-1]  # journeys with length >= position
    ended = np.zeros(jm.N_BUCKETS)
    passed = np.zeros(jm.N_BUCKETS)
    for pos in range(1, m_max + 1):
        b = jm.bucket(pos)
        ended[b] += at[pos]
        passed[b] += reach[pos]
    rate_e = np.clip((ended + 0.5) / (passed + 1.0), 1e-4, 1 - 1e-4)
    x[2 + 2 * n_codes : 2 + 2 * n_codes + jm.N_BUCKETS] = np.log(rate_e / (1 - rate_e))
    return x


def _fit_one(
    table: PathTable,
    form: str,
    rho: float,
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
    start: np.ndarray,
    targets: list[_Target] | None = None,
    max_iter: int = 100,
    sat: float = 1.0,
    hold_zeros: bool = False,
) -> JourneyModel:
    """Penalised maximum likelihood of one candidate: active-set Newton (exact Hessian), or L-BFGS-B with
    experiments. ``hold_zeros``: the effects at 0 in ``start`` (a fit of the same candidate on a sample)
    start held at their bound, released when the gradient wants them up (fewer active-set rounds)."""
    n_codes = len(table.channels)
    conv, null = counts
    active = _active(form, n_codes)
    use_h, use_p = form in ("touch", "both"), form in ("journey", "both")
    full = start.copy()
    scale = max(float(conv.sum() + null.sum()), 1.0)
    n_free = int(active.shape[0]) + (rho != 1.0) + (sat != 1.0)  # the stock's shape was chosen too

    small = table.height < _PARALLEL_ROWS  # no thread start-up for small tables
    terms = jm.nested_terms if small else jm.nested_terms_parallel
    hessian = jm.nested_hessian if small else jm.nested_hessian_parallel
    is_beta = ((active >= 1) & (active <= n_codes)) | ((active >= 2 + n_codes) & (active < 2 + 2 * n_codes))
    bounds = [(0.0, None) if b else (None, None) for b in is_beta]
    start = start.copy()
    start[active] = np.where(is_beta, np.maximum(start[active], 0.0), start[active])

    if not targets:  # active-set Newton with the exact Hessian (damped where "both" is not convex)
        full[active] = start[active]
        at_zero = is_beta & (start[active] <= 0) if hold_zeros else np.zeros(active.shape[0], dtype=bool)
        for _ in range(4 * n_codes + 4):
            free = active[~at_zero]
            sel = np.ix_(free, free)

            def newton_terms(sub: np.ndarray, want: bool, free=free, sel=sel) -> tuple[float, np.ndarray, np.ndarray]:
                full[free] = sub
                loss, grad = terms(full, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, l2)
                hess = (
                    hessian(full, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, l2)[sel]
                    if want
                    else None
                )
                return loss, grad[free], hess  # type: ignore[return-value]

            full[free] = _damped_newton(newton_terms, full[free].copy(), scale, max_iter=max_iter)
            negative = is_beta & ~at_zero & (full[active] < 0)
            if negative.any():  # hold the negative effects at 0 and solve again
                at_zero |= negative
                full[active[negative]] = 0.0
                continue
            _, grad = terms(full, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, l2)
            pull = np.where(at_zero, grad[active], 0.0)  # held effects the loss wants to increase
            if pull.min() < -1e-7 * scale:
                at_zero &= pull >= -1e-7 * scale  # release them all (a released one that turns negative
                continue  # is held again in the next round)
            break
        loss, _ = terms(full, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, 0.0)
        return JourneyModel(full.copy(), form, rho, float(loss), n_free, float(scale), sat)

    def objective(sub: np.ndarray) -> tuple[float, np.ndarray]:
        full[active] = sub
        loss, grad = terms(full, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, l2)
        for t in targets or ():
            lift, lgrad = jm.nested_lift(full, table.offsets, table.codes, t.weights, rho, sat, use_h, use_p, t.code)
            sd = _IMPOSE * t.std_error  # the test's result is imposed (nearly an equality constraint)
            r = (lift - t.value) / sd
            loss += 0.5 * r * r
            grad = grad + (r / sd) * lgrad
        return loss / scale, grad[active] / scale

    res = scipy.optimize.minimize(
        objective, start[active], jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": 2000, "gtol": 1e-9, "ftol": 1e-13, "maxcor": 20},
    )  # fmt: skip
    if not np.all(np.isfinite(res.x)):
        raise ModelError(f"DATA_DRIVEN: the {form} form did not converge ({res.message})")
    full[active] = res.x
    loss, _ = terms(full, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, 0.0)
    return JourneyModel(full.copy(), form, rho, float(loss), n_free, float(scale), sat)


def fit_candidates(
    table: PathTable,
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
    warm: list[JourneyModel] | None = None,
) -> list[JourneyModel]:
    """The candidates of ``form="auto"``: the pure forms (``touch``, ``journey``) at every decay of
    :data:`AUTO_DECAYS`, then the nested form (``both``) at the decay of the best pure one.

    ``warm``: the candidates of a previous fit to start from (the bootstrap); the same forms and decays.
    """
    if float(counts[0].sum() + counts[1].sum()) == 0:
        raise ModelError("DATA_DRIVEN: no journeys to fit on")
    if warm is not None:
        return _each(table, lambda w: _fit_one(table, w.form, w.rho, l2=l2, counts=counts, start=w.params, sat=w.sat), warm)

    def shapes(form: str) -> list[JourneyModel]:  # each shape starts from the form's previous fit (fewer steps)
        fits, start = [], _start(table, counts)
        for rho, sat in AUTO_SHAPES:
            fits.append(_fit_one(table, form, rho, l2=l2, counts=counts, start=start, sat=sat))
            start = fits[-1].params
        return fits

    out = [c for fits in _each(table, shapes, ["touch", "journey"]) for c in fits]
    best = min(out, key=lambda c: c.bic)
    rho, sat = best.rho, best.sat
    touch, journey = (
        next(c for c in out if (c.rho, c.sat) == (rho, sat) and c.form == f) for f in ("touch", "journey")
    )
    start = touch.params.copy()  # the two pure fits together
    c = len(table.channels)
    start[1 + c : 2 + 2 * c] = journey.params[1 + c : 2 + 2 * c]
    pure = min((touch, journey), key=lambda m: m.nll)  # not concave: also from the better pure fit
    starts = [start, _nudge(pure, form=pure.form)]
    both, alt = _each(table, lambda x: _fit_one(table, "both", rho, l2=l2, counts=counts, start=x, sat=sat), starts)
    return [*out, alt if alt.nll < both.nll else both]


def _each(table: PathTable, fit, items: list):
    """``[fit(item) for item in items]``, two at a time on threads when ``table`` is small enough for the
    serial kernels (they release the GIL; a parallel kernel already uses every core and is not launched
    from two threads at once). The fits are independent: the results do not depend on the threads."""
    workers = min(len(items), numba.config.NUMBA_NUM_THREADS)
    if workers < 2 or table.height >= _PARALLEL_ROWS:
        return [fit(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fit, items))


def choose_candidates(table: PathTable, *, l2: float, seed: int) -> tuple[list[JourneyModel], np.ndarray]:
    """The candidates and their BIC weights. Above :data:`SELECT_JOURNEYS` journeys the choice is made on a
    Poisson-thinned sample of that size (each path's counts drawn from ``Poisson(f · count)``, keyed by the
    path hash), then the candidates with weight above 0.001 are refitted on every journey (warm started)
    and weighted again among themselves; the others keep their sample fit and weight 0."""
    counts = (table.conversions, table.nulls)
    total = float(counts[0].sum() + counts[1].sum())
    if total <= SELECT_JOURNEYS:
        candidates = fit_candidates(table, l2=l2, counts=counts)
        return candidates, bic_weights([c.bic for c in candidates])
    from ..kernels.bootstrap import poisson_counts

    f = SELECT_JOURNEYS / total
    conv, null = poisson_counts(table.hashes, counts[0] * f, counts[1] * f, seed, _THINNING_REPLICATE)
    keep = np.flatnonzero(conv + null > 0)
    sample = _rows_of(table, keep)
    trial = fit_candidates(sample, l2=l2 * f, counts=(conv[keep], null[keep]))
    w = bic_weights([c.bic for c in trial])
    chosen = [i for i in range(len(trial)) if w[i] > _MIN_WEIGHT]
    refit = {  # from the sample's optimum a few Newton steps suffice
        i: _fit_one(
            table,
            trial[i].form,
            trial[i].rho,
            l2=l2,
            counts=counts,
            start=trial[i].params,
            max_iter=_REFIT_STEPS,
            sat=trial[i].sat,
            hold_zeros=True,
        )
        for i in chosen
    }
    full_w = bic_weights([refit[i].bic for i in chosen])
    weights = np.zeros(len(trial))
    weights[chosen] = full_w
    return [refit.get(i, c) for i, c in enumerate(trial)], weights


def _rows_of(table: PathTable, rows: np.ndarray) -> PathTable:
    """The path table restricted to ``rows`` (same channels)."""
    from ..paths import PathTable as _PathTable

    lengths = np.diff(table.offsets)[rows]
    offsets = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    idx = np.repeat(table.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
    return _PathTable(
        channels=table.channels, offsets=offsets, codes=table.codes[idx], conversions=table.conversions[rows],
        nulls=table.nulls[rows], value_micros=table.value_micros[rows], hashes=table.hashes[rows],
        distinct=table.distinct,
    )  # fmt: skip


def _nudge(model: JourneyModel, *, form: str) -> np.ndarray:
    """Start the nested form from a pure fit, the missing part nearly switched off."""
    x = model.params.copy()
    c = model.n_codes
    if form == "touch":
        x[1 + c] = -8.0
    else:
        x[0] = -8.0
    return x


def bic_weights(bic: list[float]) -> np.ndarray:
    """``exp(-ΔBIC / 2)`` normalised: the approximate posterior probabilities of the candidates."""
    b = np.asarray(bic, dtype=np.float64)
    w = np.exp(-(b - b.min()) / 2.0)
    return w / w.sum()


def _incremental(table: PathTable, phi: np.ndarray, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    off, code, _ = k.count_features(table.offsets, table.codes, len(table.channels), 0.0)
    n_rows = np.repeat(counts[0] + counts[1], np.diff(off))
    return np.bincount(code, weights=phi * n_rows, minlength=len(table.channels))


def _experiment_targets(
    experiments: tuple[Experiment, ...], table: PathTable, periods: list[tuple[np.ndarray, np.ndarray]] | None
) -> list[_Target]:
    out = []
    for i, e in enumerate(experiments):
        if e.channel not in table.channels:
            raise ModelError(
                f"DATA_DRIVEN experiment on channel {e.channel!r}: no fitted journey has that channel; "
                f"channels are {list(table.channels)}"
            )
        weights = table.conversions + table.nulls if periods is None else periods[i][0] + periods[i][1]
        out.append(_Target(table.channels.index(e.channel), np.ascontiguousarray(weights, dtype=np.float64),
                           e.incremental_conversions, e.std_error))  # fmt: skip
    return out


def experiment_periods(
    model: DataDriven,
    lo: np.ndarray,
    hi: np.ndarray,
    tail_lo: np.ndarray,
    tail_hi: np.ndarray,
    tp_codes: np.ndarray,
    tp_ts: np.ndarray,
    cv_ts: np.ndarray,
    channels: list[str],
    direct_channels: tuple[str, ...],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per experiment of ``model``, the converting and non-converting journeys of each path row of the run's
    table (docs/data_driven.md §1) whose end falls in the experiment's period: a converting journey ends at its
    conversion, a non-converting one at its last touch. Rows are those of the run's table (same journeys,
    same transform: :func:`build_path_table` orders rows by path hash, whatever the counts)."""
    from ..paths import build_path_table

    converting = hi > lo
    starts = np.concatenate([lo[converting], tail_lo])
    ends = np.concatenate([hi[converting], tail_hi])
    n_conv = int(converting.sum())
    end_us = np.concatenate([cv_ts[converting], tp_ts[np.maximum(tail_hi - 1, 0)]]) if ends.shape[0] else ends
    conv = np.zeros(starts.shape[0])
    conv[:n_conv] = 1.0
    out = []
    for e in model.experiments:
        a, b = e.bounds_us()
        inside = (end_us >= a) & (end_us < b)
        table, _ = build_path_table(
            starts, ends, tp_codes, channels, conv * inside, (1.0 - conv) * inside,
            np.zeros(starts.shape[0], dtype=np.int64), transform=model.transform,
            remove_direct_if_not_all=model.remove_direct_if_not_all, direct_channels=direct_channels,
        )  # fmt: skip
        out.append((table.conversions, table.nulls))
    return out


def _experiment_frame(
    experiments: tuple[Experiment, ...], targets: list[_Target], candidates: list[JourneyModel],
    weights: np.ndarray, table: PathTable,
) -> pl.DataFrame | None:  # fmt: skip
    """Per experiment: its result and the calibrated model's holdout effect over the same journeys."""
    if not targets:
        return None
    implied = []
    for t in targets:
        lift = 0.0
        for w, c in zip(weights, candidates, strict=True):
            if w > _MIN_WEIGHT:
                lift += w * jm.nested_lift(c.params, table.offsets, table.codes, t.weights, c.rho, c.sat, c.use_h, c.use_p,
                                           t.code)[0]  # fmt: skip
        implied.append(lift / float(weights[weights > _MIN_WEIGHT].sum()))
    return pl.DataFrame(
        {
            "channel": [e.channel for e in experiments],
            "incremental_conversions": [e.incremental_conversions for e in experiments],
            "std_error": [e.std_error for e in experiments],
            "model_incremental": implied,
            "z": [(m - e.incremental_conversions) / e.std_error for m, e in zip(implied, experiments, strict=True)],
            "journeys": [float(t.weights.sum()) for t in targets],
        }
    )


def _bootstrap_auto(
    model: DataDriven, table: PathTable, candidates: list[JourneyModel], weights: np.ndarray, targets: list[_Target]
) -> np.ndarray:
    """Shares of Poisson-bootstrap replicates that redo the whole choice: every plausible candidate (BIC
    within :data:`_PLAUSIBLE_BIC` of the best) refitted (warm started; on large tables without experiments,
    by one Newton step), weighted by its replicate's BIC weights, and averaged."""
    from ..kernels.bootstrap import poisson_counts

    out = np.empty((model.bootstrap, len(table.channels)))
    floor = float(weights.max()) * np.exp(-_PLAUSIBLE_BIC / 2)
    plausible = [c for c, w in zip(candidates, weights, strict=True) if w > 0 and w >= floor]
    one_step = table.height >= _PARALLEL_ROWS and not targets
    steps = [_one_step_solver(c, table, float(model.l2)) for c in plausible] if one_step else []
    for r in range(model.bootstrap):
        conv, null = poisson_counts(table.hashes, table.conversions, table.nulls, model.seed, r)
        counts = (conv, null)
        if one_step:
            refit = [step(counts) for step in steps]
        else:
            refit = fit_candidates(table, l2=float(model.l2), counts=counts, warm=plausible)
        w = bic_weights([c.bic for c in refit])
        draw = np.random.default_rng([model.seed, r]).standard_normal(len(targets))
        rtargets = [  # the test's sampling error: the replicate's result drawn from N(result, std_error²)
            _Target(t.code, t.weights * _ratio(t.weights, table, counts), t.value + z * t.std_error, t.std_error)
            for t, z in zip(targets, draw, strict=True)
        ]
        phi = np.zeros(0)
        total = 0.0
        for wi, c in zip(w, refit, strict=True):
            if wi <= _MIN_WEIGHT:
                continue
            if rtargets:
                c = _fit_one(table, c.form, c.rho, l2=float(model.l2), counts=counts, start=c.params, targets=rtargets,
                             sat=c.sat)  # fmt: skip
            cphi, _ = c.path_shapley(table, samples=model.samples, seed=model.seed)
            phi = wi * cphi if phi.shape[0] == 0 else phi + wi * cphi
            total += wi
        out[r] = normalise(_incremental(table, phi / total, counts))
    return out


def _one_step_solver(cand: JourneyModel, table: PathTable, l2: float):
    """A replicate's fit of ``cand`` by one Newton step from the full-data optimum with the full-data
    Hessian (a one-step bootstrap, first-order equivalent to refitting; Hu & Kalbfleisch 2000), effects
    held at 0 staying there and effects clipped at 0; the replicate's log-likelihood is
    evaluated at the stepped parameters (two passes over the table per candidate and replicate)."""
    n_codes = cand.n_codes
    active = _active(cand.form, n_codes)
    is_beta = ((active >= 1) & (active <= n_codes)) | ((active >= 2 + n_codes) & (active < 2 + 2 * n_codes))
    free = active[~(is_beta & (cand.params[active] <= 0))]
    hess = jm.nested_hessian_parallel(cand.params, table.offsets, table.codes, table.conversions, table.nulls,
                                      cand.rho, cand.sat, cand.use_h, cand.use_p, l2)[np.ix_(free, free)]  # fmt: skip
    lam = 0.0
    while True:
        try:
            factor = scipy.linalg.cho_factor(hess + lam * np.eye(free.shape[0]))
            break
        except np.linalg.LinAlgError:
            lam = max(4 * lam, 1e-9 * float(np.abs(np.diag(hess)).max()))
    betas = np.zeros(cand.params.shape[0], dtype=bool)
    betas[active[is_beta]] = True

    def step(counts: tuple[np.ndarray, np.ndarray]) -> JourneyModel:
        _, grad = jm.nested_terms_parallel(cand.params, table.offsets, table.codes, counts[0], counts[1],
                                              cand.rho, cand.sat, cand.use_h, cand.use_p, l2)  # fmt: skip
        delta = scipy.linalg.cho_solve(factor, grad[free])
        params = cand.params.copy()
        params[free] -= delta
        params[betas] = np.maximum(params[betas], 0.0)
        nll, _ = jm.nested_terms_parallel(params, table.offsets, table.codes, counts[0], counts[1],
                                          cand.rho, cand.sat, cand.use_h, cand.use_p, 0.0)  # fmt: skip
        n = float(counts[0].sum() + counts[1].sum())
        return JourneyModel(params, cand.form, cand.rho, nll, cand.n_params, n, cand.sat)

    return step


def _ratio(weights: np.ndarray, table: PathTable, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per row, the replicate's journeys over the original ones (to resample an experiment's period)."""
    n = table.conversions + table.nulls
    return np.divide(counts[0] + counts[1], n, out=np.zeros_like(n), where=n > 0)


@dataclass(frozen=True, eq=False, repr=False)
class FittedDataDriven(FittedModel):
    """A fitted :class:`DataDriven` model: ``channel_credit``, the conversion model and its diagnostics.

    Attributes (besides :class:`FittedModel`'s)
    ----------
    conversion_model
        The fitted conversion model (``form="auto"``: the candidate with the largest BIC weight).
    path_phi
        Shapley values per (path, distinct channel) (``form="auto"``: the weighted average of the candidates').
    form_selection
        ``form="auto"``: every candidate's form, decay, log_likelihood, parameters, bic, weight and the
        journeys it was fitted on (docs/data_driven.md §6.1).
    mixture
        ``form="auto"``: ``(weight, candidate)`` of the candidates averaged in the credit.
    experiment_checks
        With experiments: per test, its result and error, the calibrated model's holdout effect over the
        same journeys (``model_incremental``), ``z`` and ``journeys``.
    """

    conversion_model: ConversionModel | JourneyModel | None = None
    path_phi: np.ndarray | None = None
    sampled_paths: int = 0
    form_selection: pl.DataFrame | None = None
    mixture: tuple[tuple[float, JourneyModel], ...] = ()
    experiment_checks: pl.DataFrame | None = None

    @property
    def mechanism(self) -> str:
        """How conversions happen according to the fit: the form (and decay) with the largest weight."""
        m = self.conversion_model
        if self.paths.height == 0:
            return "none: no journeys to fit on"
        if isinstance(m, JourneyModel):
            return m.label()
        assert m is not None
        return {"touch": "per-touch hazard", "journey": "journey-end decision"}[m.form] + " (form chosen by the user)"

    @property
    def mechanism_weight(self) -> float:
        """BIC weight of :attr:`mechanism` among the candidates (1.0 when the form was given)."""
        if self.form_selection is None:
            return 1.0
        return float(self.form_selection.get_column("weight").max())

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

    def credited_fraction(self, table: PathTable, shares: np.ndarray) -> np.ndarray:
        """Per path row of ``table`` (and a last row 0), ``Σ_c max(φ_c, 0) / p(x)`` clipped to [0, 1]: the
        probability that a conversion of the path is one the channels caused (under the model) and is
        credited to them, rather than a baseline conversion (docs/data_driven.md §5). ``shares``:
        :meth:`path_shares` of ``table``."""
        m = self.conversion_model
        assert m is not None
        if self.mixture:
            p = sum(w * c.for_channels(table.channels, self.paths.channels).predict(table) for w, c in self.mixture)
        else:
            p = self._on(table).predict(table)
        p = np.append(np.asarray(p, dtype=np.float64), 1.0)
        return np.clip(np.divide(shares.sum(axis=1), p, out=np.zeros_like(p), where=p > 0), 0.0, 1.0)

    def _on(self, table: PathTable) -> ConversionModel:
        """The fitted form's model with its coefficients mapped to ``table``'s channels by name."""
        m = self.conversion_model
        assert isinstance(m, ConversionModel)
        if table is self.paths or table.channels == self.paths.channels:
            return m
        beta = dict(zip(self.paths.channels, m.beta.tolist(), strict=True))
        return ConversionModel(
            m.intercept, np.array([beta.get(c, 0.0) for c in table.channels]), m.hessian, m.rho,
            k.count_features(table.offsets, table.codes, len(table.channels), m.rho or 0.0), m.form,
        )  # fmt: skip

    def path_shares(self, table: PathTable | None = None) -> np.ndarray:
        """``max(φ, 0)`` per (path, channel code) of ``table`` (default: the fitted one) as a dense
        ``[P + 1, C]`` matrix (last row: zeros, for journeys with an empty path)."""
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
