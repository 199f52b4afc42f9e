"""The intervals of ``form="auto"``: Poisson-bootstrap replicates that redo the whole choice of form (by
refitting, or by one Newton step on large tables), each experiment's result drawn within its error and the
intent term's factor effect from its posterior."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg

from ..fitted import normalise
from .form_choice import _MIN_WEIGHT, bic_weights, fit_candidates
from .journey_model import JourneyModel, _active, _incremental, _Target
from .likelihood import PARALLEL_ROWS, Likelihood

if TYPE_CHECKING:
    from ...paths import PathTable
    from .model import DataDriven

_PLAUSIBLE_BIC = 20.0  # the bootstrap refits the candidates within this BIC of the best (odds above e^-10)


def _bootstrap_auto(
    model: DataDriven, table: PathTable, candidates: list[JourneyModel], weights: np.ndarray, targets: list[_Target]
) -> np.ndarray:
    """Shares of Poisson-bootstrap replicates that redo the whole choice: every plausible candidate (BIC
    within :data:`_PLAUSIBLE_BIC` of the best) refitted (warm started; on large tables without experiments,
    by one Newton step), weighted by its replicate's BIC weights, and averaged."""
    from ...kernels.bootstrap import poisson_counts

    out = np.empty((model.bootstrap, len(table.channels)))
    floor = float(weights.max()) * np.exp(-_PLAUSIBLE_BIC / 2)
    plausible = [c for c, w in zip(candidates, weights, strict=True) if w > 0 and w >= floor]
    one_step = table.height >= PARALLEL_ROWS and not targets
    solvers = [_one_step_solver(c, table, float(model.l2)) for c in plausible] if one_step else []
    for r in range(model.bootstrap):
        conv, null = poisson_counts(table.hashes, table.conversions, table.nulls, model.seed, r)
        if conv.sum() == 0:  # no conversion drawn: no shares (left out of the intervals, as bootstrap_shares)
            out[r] = np.nan
            continue
        counts = (conv, null)
        if one_step:  # one plausible candidate needs no likelihood to be weighed
            refit = [step(counts, len(solvers) > 1) for step in solvers]
        else:
            refit = fit_candidates(table, l2=float(model.l2), counts=counts, warm=plausible)
        w = bic_weights([c.bic for c in refit]) if len(refit) > 1 else np.ones(1)
        draw = np.random.default_rng([model.seed, r]).standard_normal(len(targets))
        rtargets = [  # the test's sampling error: the replicate's result drawn from N(result, std_error²)
            _Target(t.code, t.weights * _ratio(t.weights, table, counts), t.value + z * t.std_error, t.std_error)
            for t, z in zip(targets, draw, strict=True)
        ]
        drawn = conv + null > 0  # the rows the replicate holds: the others add nothing
        phi = np.zeros(0)
        total = 0.0
        for wi, c in zip(w, refit, strict=True):
            if wi <= _MIN_WEIGHT:
                continue
            if rtargets:  # the intent term's factor effect drawn from its posterior too (one draw per replicate)
                rng = np.random.default_rng([model.seed, r, 1])
                c = c.calibrated(table, rtargets, l2=float(model.l2), counts=counts, rng=rng)
            cphi, _ = c.path_shapley(table, samples=model.samples, seed=model.seed, used=drawn)
            phi = wi * cphi if phi.shape[0] == 0 else phi + wi * cphi
            total += wi
        out[r] = normalise(_incremental(table, phi / total, counts))
    return out


def _one_step_solver(cand: JourneyModel, table: PathTable, l2: float):
    """A replicate's fit of ``cand`` by one Newton step from the full-data optimum with the full-data
    Hessian (a one-step bootstrap, first-order equivalent to refitting; Hu & Kalbfleisch 2000), effects
    held at 0 staying there and effects clipped at 0; the replicate's log-likelihood is
    evaluated at the stepped parameters when ``weigh`` (for the BIC weights; not needed for a lone candidate):
    two passes over the prefix tree per candidate and replicate, or one."""
    n_codes = cand.n_codes
    active = _active(cand.form, n_codes, cand.pairs.shape[0])
    is_beta = ((active >= 1) & (active <= n_codes)) | ((active >= 2 + n_codes) & (active < 2 + 2 * n_codes))
    free = active[~(is_beta & (cand.params[active] <= 0))]
    like = Likelihood.of(table, cand.decays(table), cand.sat, (table.conversions, table.nulls), cand.pairs)
    hess = like.hessian(cand.params, cand.use_h, cand.use_p, l2)[2][np.ix_(free, free)]
    lam = 0.0
    while True:
        try:
            factor = scipy.linalg.cho_factor(hess + lam * np.eye(free.shape[0]))
            break
        except np.linalg.LinAlgError:
            lam = max(4 * lam, 1e-9 * float(np.abs(np.diag(hess)).max()))
    betas = np.zeros(cand.params.shape[0], dtype=bool)
    betas[active[is_beta]] = True

    def step(counts: tuple[np.ndarray, np.ndarray], weigh: bool) -> JourneyModel:
        drawn = like.counted(counts)
        _, grad = drawn.terms(cand.params, cand.use_h, cand.use_p, l2)
        delta = scipy.linalg.cho_solve(factor, grad[free])
        params = cand.params.copy()
        params[free] -= delta
        params[betas] = np.maximum(params[betas], 0.0)
        nll = drawn.terms(params, cand.use_h, cand.use_p, 0.0)[0] if weigh else math.nan
        n = float(counts[0].sum() + counts[1].sum())
        return cand.derived(params, held=np.zeros_like(params), nll=nll, n_journeys=n)

    return step


def _ratio(weights: np.ndarray, table: PathTable, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per row, the replicate's journeys over the original ones (to resample an experiment's period)."""
    n = table.conversions + table.nulls
    return np.divide(counts[0] + counts[1], n, out=np.zeros_like(n), where=n > 0)
