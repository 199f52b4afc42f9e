"""The coalition survival factors of the journey model's Shapley kernel (kernels/journey_model.py) against
the direct formula, extreme logits included (where the product of exponentials would leave the doubles'
range and each coalition's own sigmoid is taken)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_engine.kernels import journey_model as jm


def _survival(z: float) -> float:
    """``1 - σ(z)``, stable both ways."""
    return 1.0 / (1.0 + math.exp(z)) if z < 0 else math.exp(-z) / (1.0 + math.exp(-z))


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-800, 800),
    st.lists(st.tuples(st.floats(0, 400), st.floats(0, 3)), min_size=0, max_size=13),
)
def test_survival_factors_equal_each_coalitions_sigmoid(base, players) -> None:
    k = len(players)
    params = np.array([0.0] + [b for b, _ in players])
    x = np.array([v for _, v in players] or [0.0])
    chan = np.arange(max(k, 1), dtype=np.int64)
    out = np.empty(1 << k)
    jm._survival_factors(base, params, 1, chan, x, k, np.zeros((1, 3), dtype=np.int64), 0, out)
    for s in range(1 << k):
        z = base + sum(params[1 + q] * x[q] for q in range(k) if (s >> q) & 1)
        assert out[s] == pytest.approx(_survival(z), rel=1e-9, abs=1e-300)
