"""The bound-constrained minimiser of DATA_DRIVEN's fits against SciPy's: projected Newton
(``_projected_newton``) on convex quadratics with some parameters bounded at 0 (a non-negative least-squares
problem, many of whose optima sit on the bounds) reaches the optimum of ``scipy.optimize.lsq_linear``; and on a
problem built to make holding-and-releasing rounds cycle it still converges."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_engine.models.data_driven.journey_model import _DECREMENT, _projected_newton


def _quadratic(a: np.ndarray, b: np.ndarray):
    def terms(x: np.ndarray):
        r = a @ x - b
        return 0.5 * float(r @ r), a.T @ r

    return terms, lambda x: (*terms(x), a.T @ a)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(3, 40),
    cols=st.integers(1, 12),
    shift=st.floats(-3.0, 1.0),
)
def test_projected_newton_reaches_the_bounded_least_squares_optimum(seed, rows, cols, shift):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(rows, cols)) * rng.uniform(0.1, 10.0, size=cols)  # badly scaled columns
    b = rng.normal(size=rows) + shift * a.sum(axis=1) / cols  # shift < 0: many optima on the bounds
    bounded = rng.random(cols) < 0.7
    lower = np.where(bounded, 0.0, -np.inf)
    terms, second = _quadratic(a, b)
    start = np.where(rng.random(cols) < 0.5, 1e-5, rng.normal(size=cols))  # some just above their bound
    x = _projected_newton(terms, second, start, bounded, float(rows), max_iter=200)
    ref = scipy.optimize.lsq_linear(a, b, bounds=(lower, np.inf), tol=1e-12, lsmr_tol="auto", method="bvls")
    assert np.all(x[bounded] >= 0.0)
    assert terms(x)[0] <= terms(ref.x)[0] + 2 * _DECREMENT  # the stopping rule's promise


def test_parameters_just_above_their_bound_reach_it():
    """Bounded parameters starting just above 0 whose gradient pushes them down end exactly at 0 (they are
    within ε of the bound: a scaled gradient step, projected, not held still)."""
    terms, second = _quadratic(np.eye(3), np.array([-1.0, -2.0, 3.0]))
    x = _projected_newton(terms, second, np.full(3, 1e-5), np.ones(3, dtype=bool), 1.0, max_iter=50)
    np.testing.assert_array_equal(x[:2], 0.0)
    assert x[2] == pytest.approx(3.0, abs=1e-6)


def test_projected_newton_converges_where_release_rounds_cycle():
    """Correlated columns whose unconstrained optimum is negative in turn for each: releasing every
    bounded parameter the gradient pulls up, then holding those that turn negative, can revisit the same
    sets; projected Newton ends at the optimum (SciPy's non-negative least squares)."""
    n = 6
    corr = 0.9 * np.ones((n, n)) + 0.1 * np.eye(n)
    a = np.linalg.cholesky(corr).T
    b = a @ np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]) * 3
    bounded = np.ones(n, dtype=bool)
    terms, second = _quadratic(a, b)
    x = _projected_newton(terms, second, np.zeros(n), bounded, 1.0, max_iter=200)
    assert np.all(x >= 0)
    ref = scipy.optimize.nnls(a, b)[0]
    np.testing.assert_allclose(x, ref, atol=1e-7)
