"""Held-out scoring: folds, log-loss/AUC against brute force, order selection, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.selection import calibration_table, fold_tables, scores


@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=12))
def test_scores_equal_brute_force(rows) -> None:
    p = np.array([r[0] for r in rows])
    conv = np.array([r[1] for r in rows], dtype=float)
    null = np.array([r[2] for r in rows], dtype=float)
    log_loss, auc = scores(p, conv, null)
    pos = [pi for pi, c, _ in rows for _ in range(c)]
    neg = [pi for pi, _, n in rows for _ in range(n)]
    if pos and neg:
        pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in pos for b in neg]
        assert auc == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)
    else:
        assert math.isnan(auc)
    if pos or neg:
        q = np.clip(p, 1e-12, 1 - 1e-12)
        expected = -sum(math.log(q[i]) * c + math.log(1 - q[i]) * n for i, (_, c, n) in enumerate(rows))
        assert log_loss == pytest.approx(expected / (len(pos) + len(neg)), rel=1e-9)


def _fit(n_users: int = 4_000) -> oq.models.FittedModel:
    data = oq.synthetic.generate(n_users=n_users, seed=4)
    return oq.attribute(data.touchpoints, data.conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"]


@pytest.mark.slow
def test_folds_partition_the_journeys() -> None:
    table = _fit().paths
    splits = fold_tables(table, 4, seed=1)
    tests = sum(te.conversions for _, te in splits)
    np.testing.assert_array_equal(tests, table.conversions)
    for train, test in splits:
        np.testing.assert_array_equal(train.conversions + test.conversions, table.conversions)
        np.testing.assert_array_equal(train.nulls + test.nulls, table.nulls)


def test_folds_keep_fractional_counts_in_the_test_folds() -> None:
    """Weighted paths have fractional counts: every fold's test table holds its share of them (the draws
    deal whole journeys; the remainder once went to the training side of every fold and to no test)."""
    import polars as pl

    frame = pl.DataFrame({"path": ["a > b", "b", "a"], "conversions": [2.5, 0.25, 3.0], "nulls": [1.75, 4.0, 0.5]})
    table = oq.PathTable.from_frame(frame, conversions="conversions", nulls="nulls", transform="frequency").merged()
    splits = fold_tables(table, 3, seed=7)
    np.testing.assert_allclose(sum(te.conversions for _, te in splits), table.conversions, rtol=1e-12)
    np.testing.assert_allclose(sum(te.nulls for _, te in splits), table.nulls, rtol=1e-12)
    for train, test in splits:
        np.testing.assert_allclose(train.conversions + test.conversions, table.conversions, rtol=1e-12)
        assert (test.conversions >= 0).all() and (train.nulls >= 0).all()


@pytest.mark.slow
def test_order_selection_and_model_comparison() -> None:
    fit = _fit()
    orders = oq.select_markov_order(fit, orders=(1, 2), folds=3)
    assert orders.get_column("recommended").sum() == 1
    assert orders.get_column("auc").is_between(0, 1).all()
    compared = oq.compare_conversion_models(fit, markov_orders=(1,), folds=3)
    assert compared.get_column("model").to_list() == [
        "DATA_DRIVEN (touch)",
        "DATA_DRIVEN (journey)",
        "MARKOV (order 1)",
    ]
    table = calibration_table(fit, bins=5)
    assert table.get_column("journeys").sum() == pytest.approx(fit.paths.conversions.sum() + fit.paths.nulls.sum())
