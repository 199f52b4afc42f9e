"""DATA_DRIVEN with a form given by the user (``form="touch"`` or ``"journey"``): :class:`ConversionModel`,
a logistic model of the touch counts fitted by penalised maximum likelihood (docs/data_driven.md §6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.linalg

from ...errors import ModelError
from ...kernels import logistic as k

if TYPE_CHECKING:
    from ...paths import PathTable


class ConversionModel:
    """``p(x) = σ(b + Σ_c β_c f(k_c(x)))`` fitted by penalised maximum likelihood on a path table.

    Made by :meth:`fit` (or with no coefficient, for a table with no journey).

    Parameters
    ----------
    intercept
        ``b``.
    beta
        ``β_c``, one per channel code of the fitted table.
    hessian
        The penalised Hessian of the negative log-likelihood at the optimum, ``[C + 1, C + 1]`` (intercept
        first), for the standard errors of :meth:`coefficients`.
    rho
        The saturation of ``f`` (None: ``f(k) = k``).
    features
        ``(feat_offsets, feat_code, feat_value)`` of the table it was fitted on
        (:func:`~optiq_engine.kernels.logistic.count_features`).
    form
        ``"touch"`` (per-touch hazard) or ``"journey"`` (one decision per journey).
    """

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
        """Fit the model of ``form`` on a path table by penalised maximum likelihood.

        Parameters
        ----------
        table
            The path table.
        l2
            L2 penalty on the channel coefficients (the intercept is not penalised).
        rho
            Saturation of ``f`` (None: ``f(k) = k``).
        form
            ``"touch"`` (default: damped Newton on the hazard model); any other value fits the journey form
            (damped Newton on the logistic model).
        counts
            ``(conversions, nulls)`` per path row to fit instead of the table's own (a bootstrap replicate);
            default None.

        Returns
        -------
        ConversionModel

        Raises
        ------
        ModelError
            No journey to fit on (conversions and nulls sum to 0), or the optimisation ends on non-finite
            parameters.
        """
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
            params, hessian = _newton(lambda x, h: logistic_terms(x, feats, conv, null, float(l2), h), x0)
        return cls(float(params[0]), params[1:].copy(), hessian, rho, feats, form)

    def predict(self, table: PathTable) -> np.ndarray:
        """p(x) of every path row of ``table`` (its channels those of the fit), in the model's form.

        Parameters
        ----------
        table
            A path table whose channel codes are those of the fit.

        Returns
        -------
        numpy.ndarray
            float64, one probability per path row.
        """
        if self.form == "touch":
            return k.hazard_predict(table.offsets, table.codes, self.beta, self.intercept, self.rho or 0.0)
        off, code, value = k.count_features(table.offsets, table.codes, len(table.channels), self.rho or 0.0)
        rows = np.repeat(np.arange(table.height), np.diff(off))
        z = self.intercept + np.bincount(rows, weights=self.beta[code] * value, minlength=table.height)
        return 1.0 / (1.0 + np.exp(-z))

    def path_shapley(self, table: PathTable, *, samples: int, seed: int) -> tuple[np.ndarray, int]:
        """Shapley values per (path, distinct channel), aligned with the features.

        Parameters
        ----------
        table
            The path table (for ``form="journey"``, the one the model was fitted on: its stored features are
            used).
        samples
            Orderings sampled for paths with more than
            :data:`~optiq_engine.kernels.logistic.EXACT_MAX_CHANNELS` distinct channels.
        seed
            Seed of those samples (keyed by each path's hash too).

        Returns
        -------
        phi : numpy.ndarray
            float64, one value per (path, distinct channel).
        sampled : int
            The number of paths whose values were sampled.
        """
        if self.form == "touch":
            return k.hazard_shapley(
                table.offsets, table.codes, self.beta, self.intercept, self.rho or 0.0, table.hashes, samples, seed
            )
        off, code, value = self.features
        return k.path_shapley(off, code, value, self.beta, self.intercept, table.hashes, samples, seed)

    def incremental(
        self, table: PathTable, phi: np.ndarray, counts: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Σ over journeys of φ per channel: the expected incremental conversions.

        Parameters
        ----------
        table
            The path table the model was fitted on.
        phi
            :meth:`path_shapley` of it.
        counts
            ``(conversions, nulls)`` per path row instead of the table's own (a bootstrap replicate); default
            None.

        Returns
        -------
        numpy.ndarray
            float64, one value per channel of ``table``.
        """
        off, code, _ = self.features
        conv, null = counts if counts is not None else (table.conversions, table.nulls)
        n_rows = np.repeat(conv + null, np.diff(off))
        return np.bincount(code, weights=phi * n_rows, minlength=len(table.channels))

    def coefficients(self, channels: tuple[str, ...]) -> pl.DataFrame:
        """``term``, ``coef`` and ``std_error`` (from the inverse penalised Hessian).

        Parameters
        ----------
        channels
            The fitted table's channel names (the terms after ``(intercept)``).

        Returns
        -------
        polars.DataFrame
            One row per term; ``std_error`` is NaN when the Hessian is singular.
        """
        try:
            cov = np.linalg.inv(self.hessian)
            se = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            se = np.full(self.hessian.shape[0], np.nan)
        return pl.DataFrame(
            {"term": ["(intercept)", *channels], "coef": [self.intercept, *self.beta.tolist()], "std_error": se}
        )


def logistic_terms(
    x: np.ndarray, feats, conv: np.ndarray, null: np.ndarray, l2: float, want: bool
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """The journey-end logistic model on ``feats`` (:func:`~optiq_engine.kernels.logistic.count_features`):
    penalised negative log-likelihood, gradient and (``want``) Hessian, for :func:`_newton`."""
    if want:  # one pass
        loss, grad, hess = k.logistic_hessian(x, *feats, conv, null, l2)
        return float(loss), grad, hess
    loss, grad = k.logistic_loss_grad(x, *feats, conv, null, l2)
    return float(loss), grad, None


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
