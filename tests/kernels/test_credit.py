"""kernels/credit.window_fraction against the slow reference (tests/reference/credit.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_engine.kernels.credit import window_fraction
from tests.reference.credit import window_fraction_reference

SHARE = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=1e-300, max_value=1e300))


@st.composite
def cases(draw):
    """Windows over 1..5 channel codes (some empty, repeats and single touches), rows of shares, and
    probabilities (0, tiny, ordinary, above the shares' sum)."""
    n_codes = draw(st.integers(1, 5))
    n_rows = draw(st.integers(1, 4))
    shares = [[draw(SHARE) for _ in range(n_codes)] for _ in range(n_rows)]
    p = [draw(st.one_of(st.just(0.0), st.floats(min_value=1e-12, max_value=2.0))) for _ in range(n_rows)]
    windows = draw(st.lists(st.lists(st.integers(0, n_codes - 1), max_size=6), max_size=8))
    rows = [draw(st.integers(0, n_rows - 1)) for _ in windows]
    return windows, shares, rows, p


def _run(windows, shares, rows, p):
    lo = np.cumsum([0] + [len(w) for w in windows])[:-1].astype(np.int64)
    hi = lo + np.array([len(w) for w in windows], dtype=np.int64)
    codes = np.array([c for w in windows for c in w], dtype=np.int32)
    args = (lo, hi, codes, np.array(shares, dtype=np.float64), np.array(rows, dtype=np.int64), np.array(p))
    copies = [a.copy() for a in args]
    out = window_fraction(*args)
    for a, b in zip(args, copies, strict=True):  # pure: the inputs are untouched
        np.testing.assert_array_equal(a, b)
    return out


@settings(max_examples=200, deadline=None)
@given(cases())
def test_window_fraction_matches_reference(case) -> None:
    got = _run(*case)
    want = window_fraction_reference(*case)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert ((got >= 0) & (got <= 1)).all()


def test_repeats_count_once_and_missing_channels_not_at_all() -> None:
    # row 0: φ = (0.1, 0.2, 0.3), p = 0.8; window [0, 0, 2] -> (0.1 + 0.3) / 0.8; window [1] -> 0.25
    shares = [[0.1, 0.2, 0.3]]
    got = _run([[0, 0, 2], [1], []], shares, [0, 0, 0], [0.8])
    assert got.tolist() == pytest.approx([0.5, 0.25, 0.0])
