"""DATA_DRIVEN: a fitted conversion model decomposed per journey by exact Shapley values (docs/data_driven.md §6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import polars as pl
import scipy.linalg
import scipy.optimize
import scipy.sparse

from ..errors import ConfigError, ModelError
from ..kernels import logistic as k
from .base import register_model
from .fitted import DataDrivenModel, FittedModel, credit_frame, normalise

if TYPE_CHECKING:
    from ..paths import PathTable

__all__ = ["DataDriven", "FittedDataDriven", "ConversionModel"]


@register_model
@dataclass(frozen=True)
class DataDriven(DataDrivenModel):
    """Logistic conversion model on per-channel touch counts, decomposed per journey by exact Shapley.

    Parameters
    ----------
    form
        ``"touch"`` (default): every touch is a decision point, ``h_j = σ(b + Σ_c β_c f(K_c(j)))`` and
        ``p(journey) = 1 - Π_j (1 - h_j)`` (a discrete-time hazard model); ``"journey"``: one decision per
        journey, ``p = σ(b + Σ_c β_c f(k_c))``.
    l2
        L2 penalty on the channel coefficients (in units of journeys; the intercept is not penalised).
    saturation
        ``None`` for ``f(k) = k``, or ``rho`` in (0, 1) for ``f(k) = (1 - rho**k) / (1 - rho)``.
    samples
        Orderings sampled for journeys with more than 20 distinct channels.
    """

    name = "DATA_DRIVEN"
    transform: str = "frequency"
    form: str = "touch"
    l2: float = 1.0
    saturation: float | None = None
    samples: int = 2_000

    config_fields: ClassVar[dict[str, str]] = {
        name: source for name, source in DataDrivenModel.config_fields.items() if name != "transform"
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.form not in ("touch", "journey"):
            raise ConfigError(f"DATA_DRIVEN form must be 'touch' or 'journey', got {self.form!r}")
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or not self.l2 >= 0:
            raise ConfigError(f"DATA_DRIVEN l2 must be a number >= 0, got {self.l2!r}")
        if self.saturation is not None and not (isinstance(self.saturation, float) and 0 < self.saturation < 1):
            raise ConfigError(f"DATA_DRIVEN saturation must be None or a float in (0, 1), got {self.saturation!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 2:
            raise ConfigError(f"DATA_DRIVEN samples must be an integer >= 2, got {self.samples!r}")

    def fit(self, table: PathTable, *, direct_channels: tuple[str, ...] = ("direct",)) -> FittedDataDriven:
        if self.bootstrap:
            table = table.merged()
        model = ConversionModel.fit(table, l2=self.l2, rho=self.saturation, form=self.form)
        phi, sampled = model.path_shapley(table, samples=self.samples, seed=self.seed)
        incremental = model.incremental(table, phi)
        shares = normalise(incremental)
        replicates = np.empty((self.bootstrap, len(table.channels)))
        if self.bootstrap:
            from ..kernels.bootstrap import poisson_counts

            for r in range(self.bootstrap):
                conv, null = poisson_counts(table.hashes, table.conversions, table.nulls, self.seed, r)
                resampled = ConversionModel.fit(table, l2=self.l2, rho=self.saturation, form=self.form, counts=(conv, null))
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

    def predict(self) -> np.ndarray:
        """p(x) of every path of the table the model was fitted on (the journey form)."""
        off, code, value = self.features
        z = self.intercept + np.add.reduceat(
            np.concatenate([self.beta[code] * value, [0.0]]), np.minimum(off[:-1], code.shape[0])
        ) * (np.diff(off) > 0)
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


@dataclass(frozen=True, eq=False, repr=False)
class FittedDataDriven(FittedModel):
    """A fitted :class:`DataDriven` model: ``channel_credit``, the conversion model and its diagnostics."""

    conversion_model: ConversionModel | None = None
    path_phi: np.ndarray | None = None
    sampled_paths: int = 0

    @property
    def baseline_rate(self) -> float:
        """σ(b): the conversion rate of a journey with no channel effect."""
        assert self.conversion_model is not None
        return float(1.0 / (1.0 + np.exp(-self.conversion_model.intercept)))

    @property
    def coefficients(self) -> pl.DataFrame:
        assert self.conversion_model is not None
        return self.conversion_model.coefficients(self.paths.channels)

    def path_shares(self, table: PathTable | None = None) -> np.ndarray:
        """``max(φ, 0)`` per (path, channel code) of ``table`` (default: the fitted one) as a dense
        ``[P + 1, C]`` matrix (last row: zeros, for journeys with an empty path)."""
        m = self.conversion_model
        assert m is not None and self.path_phi is not None
        if table is None or table is self.paths:
            table, phi = self.paths, self.path_phi
        else:  # another table (a partition): the same model, its coefficients mapped by channel name
            beta = dict(zip(self.paths.channels, m.beta.tolist(), strict=True))
            other = ConversionModel(
                m.intercept, np.array([beta.get(c, 0.0) for c in table.channels]), m.hessian, m.rho,
                k.count_features(table.offsets, table.codes, len(table.channels), m.rho or 0.0), m.form,
            )  # fmt: skip
            phi, _ = other.path_shapley(table, samples=self.model.samples, seed=self.model.seed)  # type: ignore[attr-defined]
        off, code, _ = k.count_features(table.offsets, table.codes, len(table.channels), m.rho or 0.0)
        out = np.zeros((off.shape[0], len(table.channels)))
        rows = np.repeat(np.arange(off.shape[0] - 1), np.diff(off))
        out[rows, code] = np.maximum(phi, 0.0)
        return out
