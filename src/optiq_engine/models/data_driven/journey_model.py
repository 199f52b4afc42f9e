"""One candidate of ``form="auto"``: the whole-journey model (kernels/journey_model.py) with its form and
stock shape, :class:`JourneyModel`, and its penalised maximum-likelihood fit (:func:`_fit_one`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.linalg
import scipy.optimize

from ...errors import ModelError
from ...kernels import journey_model as jm
from ...kernels import logistic as k
from .intent import exposure_factor, intent_held

if TYPE_CHECKING:
    from ...paths import PathTable

_IMPOSE = 0.02  # an experiment's penalty uses this fraction of its standard error: the result is imposed
_PARALLEL_ROWS = 100_000  # path rows from which the likelihood is summed in parallel


def shape_label(rho: float, sat: float) -> str:
    """``"touch counts"``, ``"stock decaying x0.7 per touch"`` or ``"repeats saturating x0.7"``."""
    parts = [f"stock decaying x{rho:g} per touch"] if rho != 1.0 else []
    parts += [f"repeats saturating x{sat:g}"] if sat != 1.0 else []
    return ", ".join(parts) or "touch counts"


class JourneyModel:
    """One fitted candidate of ``form="auto"``: the whole-journey model with its form and stock decay.

    Parameters
    ----------
    params, form, rho, nll, n_params, n_journeys
        The attributes below.
    sat
        The attribute below; default 1.0 (no saturation).
    held
        The attribute below; default None (no intent term).

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
    held
        Shaped as ``params``: the intent term of a fit calibrated by experiments (``intent.intent_held``), the
        part of the channels' observed effects that is the users' intent. The likelihood reads
        ``params + held``; the channels' effects, their credit and holdout effects are ``params``, with
        ``held`` in every coalition's baseline. Zeros: none.
    """

    def __init__(
        self,
        params: np.ndarray,
        form: str,
        rho: float,
        nll: float,
        n_params: int,
        n_journeys: float,
        sat: float = 1.0,
        held: np.ndarray | None = None,
    ) -> None:
        self.params = params
        self.held = np.zeros_like(params) if held is None else held
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
        """Shapley values per (path, distinct channel in first-occurrence order).

        Parameters
        ----------
        table
            A path table whose channel codes are those of the model (:meth:`for_channels` maps them).
        samples
            Orderings sampled for paths with more than
            :data:`~optiq_engine.kernels.logistic.EXACT_MAX_CHANNELS` distinct channels.
        seed
            Seed of those samples.

        Returns
        -------
        phi : numpy.ndarray
            float64, one value per (path, distinct channel).
        sampled : int
            The number of paths whose values were sampled.
        """
        phi, sampled = jm.nested_shapley(
            table.offsets,
            table.codes,
            self.params,
            self.held,
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
        """P(convert | path) of every row of ``table`` (``drop``: a channel code whose effect is removed).

        Parameters
        ----------
        table
            A path table whose channel codes are those of the model.
        drop
            A channel code whose effect is removed; default -1: none.

        Returns
        -------
        numpy.ndarray
            float64, one probability per path row.
        """
        return jm.nested_predict(
            table.offsets, table.codes, self.params, self.held, self.rho, self.sat, self.use_h, self.use_p, drop
        )

    def for_channels(self, channels: tuple[str, ...], fitted: tuple[str, ...]) -> JourneyModel:
        """The same model with its channel coefficients re-indexed for ``channels`` (0 for unseen ones).

        Parameters
        ----------
        channels
            The channel names of the table to apply the model to.
        fitted
            The channel names the model was fitted on (its coefficients' order).

        Returns
        -------
        JourneyModel
            A new model; intercepts and ending terms unchanged, ``nll`` and BIC those of the fit.
        """
        params, held = (_reindexed(v, channels, fitted) for v in (self.params, self.held))
        return JourneyModel(params, self.form, self.rho, self.nll, self.n_params, self.n_journeys, self.sat, held)

    def coefficients(self, channels: tuple[str, ...]) -> pl.DataFrame:
        """``part`` (touch / journey / intent / ending), ``term`` and ``coef`` of the parts in the model.

        Parameters
        ----------
        channels
            The fitted channel names, in code order.

        Returns
        -------
        polars.DataFrame
            The touch and journey parts the form uses, the intent term of a calibrated fit (per channel, the part
            of its observed effect that is intent, on the first part's scale), then the ending terms (by position
            and by last channel).
        """
        c = len(channels)
        rows: list[tuple[str, str, float]] = []
        if self.use_h:
            rows += [("touch", "(intercept)", float(self.params[0]))]
            rows += [("touch", ch, float(self.params[1 + i])) for i, ch in enumerate(channels)]
        if self.use_p:
            rows += [("journey", "(intercept)", float(self.params[1 + c]))]
            rows += [("journey", ch, float(self.params[2 + c + i])) for i, ch in enumerate(channels)]
        if self.held.any():
            base = 1 if self.use_h else 2 + c
            rows += [("intent", ch, float(self.held[base + i])) for i, ch in enumerate(channels)]
        labels = ["1", "2", "3", "4", "5", "6", "7-8", "9-12", "13-20", "21+"]
        rows += [("ending", f"position {b}", float(self.params[2 + 2 * c + i])) for i, b in enumerate(labels)]
        rows += [
            ("ending", f"after {ch}", float(self.params[2 + 2 * c + jm.N_BUCKETS + i])) for i, ch in enumerate(channels)
        ]
        part, term, coef = zip(*rows, strict=True)
        return pl.DataFrame({"part": list(part), "term": list(term), "coef": list(coef)})

    def calibrated(
        self,
        table: PathTable,
        targets: list[_Target],
        *,
        l2: float,
        counts: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> JourneyModel:
        """The model refitted with the experiments' penalty ``Σ (L_e - target_e)² / (2 (0.02 · se_e)²)``: each
        test's result is imposed (to within 2 % of its error), not averaged with the fit; then the tested
        channels' bias (this fit's effects against the calibrated ones) is spread as the users' intent along
        the exposure factor and the model refitted with that intent term held (docs/data_driven.md §6.1,
        "Calibration by experiments").

        Parameters
        ----------
        table
            The path table the model was fitted on.
        targets
            The experiments resolved against ``table``.
        l2
            L2 penalty on the channel coefficients.
        counts
            Converting and non-converting journeys per row; default: the table's.

        Returns
        -------
        JourneyModel
            Refitted from this model's parameters, same form and stock shape, with its ``held`` intent term.

        Raises
        ------
        ModelError
            The optimisation ends on non-finite parameters.
        """
        counts = (table.conversions, table.nulls) if counts is None else counts
        fit = partial(_fit_one, table, self.form, self.rho, l2=l2, counts=counts, targets=targets, sat=self.sat)
        first = fit(start=self.params)
        c = self.n_codes
        parts = ([1] if self.use_h else []) + ([2 + c] if self.use_p else [])
        factor = exposure_factor(table, counts[0] + counts[1], self.rho, self.sat)
        held = intent_held(self.params, first.params, [t.code for t in targets], factor, parts)
        return fit(start=self.params - held, held=held) if held.any() else first


def _reindexed(v: np.ndarray, channels: tuple[str, ...], fitted: tuple[str, ...]) -> np.ndarray:
    """Parameters ``v`` (ordered as ``fitted``) re-indexed for ``channels``, 0 for the unseen ones."""
    index = {c: i for i, c in enumerate(fitted)}
    c_old, c_new = len(fitted), len(channels)
    b = jm.N_BUCKETS
    out = np.zeros(2 + 3 * c_new + b)
    out[0] = v[0]
    out[1 + c_new] = v[1 + c_old]
    out[2 + 2 * c_new : 2 + 2 * c_new + b] = v[2 + 2 * c_old : 2 + 2 * c_old + b]
    for i, c in enumerate(channels):
        if c in index:
            out[1 + i] = v[1 + index[c]]
            out[2 + c_new + i] = v[2 + c_old + index[c]]
            out[2 + 2 * c_new + b + i] = v[2 + 2 * c_old + b + index[c]]
    return out


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
    held: np.ndarray | None = None,
) -> JourneyModel:
    """Penalised maximum likelihood of one candidate: active-set Newton (exact Hessian), or L-BFGS-B with
    experiments. ``hold_zeros``: the effects at 0 in ``start`` (a fit of the same candidate on a sample)
    start held at their bound, released when the gradient wants them up (fewer active-set rounds). ``held``
    (experiments only): the intent term, added to the parameters in the likelihood (JourneyModel)."""
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

    held = np.zeros_like(full) if held is None else held

    def objective(sub: np.ndarray) -> tuple[float, np.ndarray]:
        full[active] = sub
        loss, grad = terms(full + held, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, l2)
        for t in targets or ():
            lift, lgrad, _ = jm.nested_lift(
                full, held, table.offsets, table.codes, t.weights, rho, sat, use_h, use_p, t.code
            )
            sd = _IMPOSE * t.std_error  # the test's result is imposed (nearly an equality constraint)
            r = (lift - t.value) / sd
            loss += 0.5 * r * r
            grad = grad + (r / sd) * lgrad
        return loss / scale, grad[active] / scale

    res = scipy.optimize.minimize(
        objective,
        start[active],
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "gtol": 1e-9, "ftol": 1e-13, "maxcor": 20},
    )
    if not np.all(np.isfinite(res.x)):
        raise ModelError(f"DATA_DRIVEN: the {form} form did not converge ({res.message})")
    full[active] = res.x
    loss, _ = terms(full + held, table.offsets, table.codes, conv, null, rho, sat, use_h, use_p, 0.0)
    return JourneyModel(full.copy(), form, rho, float(loss), n_free, float(scale), sat, held)


def _incremental(table: PathTable, phi: np.ndarray, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per channel, φ (per path and distinct channel) summed over the journeys of ``counts``: the expected
    incremental conversions."""
    off, code, _ = k.count_features(table.offsets, table.codes, len(table.channels), 0.0)
    n_rows = np.repeat(counts[0] + counts[1], np.diff(off))
    return np.bincount(code, weights=phi * n_rows, minlength=len(table.channels))
