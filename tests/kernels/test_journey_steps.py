"""The prefix tree of the whole-journey likelihood (kernels/journey_steps.py) against the reference
(tests/reference/data_driven.py): nodes, weights and stocks on random path tables, and the tree's likelihood
equal to the sum over every path's touches, serial and parallel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_engine.kernels import journey_steps as js
from tests.reference import data_driven as ref

N_CODES, N_ROWS = 4, 3

touch = st.tuples(st.integers(0, N_CODES - 1), st.integers(0, N_ROWS - 1))
tables = st.lists(
    st.tuples(st.lists(touch, min_size=0, max_size=7), st.integers(0, 3), st.integers(0, 3)), min_size=0, max_size=25
)


def _arrays(rows: list) -> tuple[np.ndarray, ...]:
    lengths = [len(p) for p, _, _ in rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = np.array([c for p, _, _ in rows for c, _ in p], dtype=np.int32)
    gaps = np.array([g for p, _, _ in rows for _, g in p], dtype=np.int8)
    conv = np.array([a for _, a, _ in rows], dtype=np.float64)
    null = np.array([b for _, _, b in rows], dtype=np.float64)
    return offsets, codes, gaps, conv, null


def _prefixes(parent: np.ndarray, code: np.ndarray, row: np.ndarray) -> list[tuple[tuple[int, int], ...]]:
    out: list[tuple[tuple[int, int], ...]] = []
    for i in range(parent.shape[0]):
        assert parent[i] < i  # parents before their children
        out.append((out[parent[i]] if parent[i] >= 0 else ()) + ((int(code[i]), int(row[i])),))
    return out


@settings(max_examples=150, deadline=None)
@given(tables, st.floats(0.2, 1.0), st.floats(0.2, 1.0))
def test_prefix_tree_weights_and_stocks_equal_the_reference(rows, decay, sat) -> None:
    offsets, codes, gaps, conv, null = _arrays(rows)
    parent, code, depth, row, end = js.prefix_nodes(offsets, codes, gaps)
    prefixes = _prefixes(parent, code, row)
    assert len(set(prefixes)) == len(prefixes)  # one node per distinct prefix
    assert [len(p) for p in prefixes] == depth.tolist()
    for (path, _, _), node in zip(rows, end, strict=True):
        assert (node == -1) if not path else prefixes[node] == tuple(path)
    want = ref.prefix_tree([p for p, _, _ in rows], conv.tolist(), null.tolist())
    assert set(want) == set(prefixes)
    w_pass, w_conv, w_null = js.node_weights(parent, end, conv, null)
    for i, prefix in enumerate(prefixes):
        assert (w_pass[i], w_conv[i], w_null[i]) == want[prefix]
    factors = np.array([[decay ** (r + 1) * (1 + 0.1 * c) ** -r for c in range(N_CODES)] for r in range(N_ROWS)])
    off, chan, val = js.node_stocks(parent, code, depth, row, factors, sat, N_CODES)
    for i, prefix in enumerate(prefixes):
        expected = ref.prefix_stock(prefix, factors.tolist(), sat)
        got = dict(zip(chan[off[i] : off[i + 1]].tolist(), val[off[i] : off[i + 1]].tolist(), strict=True))
        assert list(got) == list(dict.fromkeys(c for c, _ in prefix))  # first-touch order
        assert got == pytest.approx(expected, rel=1e-12)


# kinds 0: a with b, 1: a then b, 2: a first
PAIRS = np.array([[0, 1, 0], [1, 0, 1], [2, 3, 1], [3, 1, 0], [2, 2, 2]], dtype=np.int64)


def _holds(seq: list[int], a: int, b: int, kind: int) -> bool:
    if kind == 0:
        return a in seq and b in seq
    if kind == 1:
        return a in seq and b in seq[seq.index(a) + 1 :]
    return seq[0] == a


@settings(max_examples=150, deadline=None)
@given(tables)
def test_pair_entries_and_pair_scores_equal_the_reference(rows) -> None:
    """The pair effects' node entries (:func:`pair_stocks`) and the pair screen's sums
    (:func:`~optiq_engine.kernels.journey_model.pair_scores`) against plain definitions."""
    from optiq_engine.kernels import journey_model as jm

    offsets, codes, gaps, conv, null = _arrays(rows)
    parent, code, depth, row, _ = js.prefix_nodes(offsets, codes, gaps)
    factors = np.ones((N_ROWS, N_CODES))
    stocks = js.node_stocks(parent, code, depth, row, factors, 1.0, N_CODES)
    off, chan, val = js.pair_stocks(parent, code, *stocks, PAIRS, N_CODES)
    for i, prefix in enumerate(_prefixes(parent, code, row)):
        seq = [c for c, _ in prefix]
        want = [N_CODES + k for k, (a, b, kind) in enumerate(PAIRS.tolist()) if _holds(seq, a, b, kind)]
        entries = chan[off[i] : off[i + 1]].tolist()
        assert entries == list(dict.fromkeys(seq)) + want
        assert val[off[i] : off[i + 1]].tolist()[len(entries) - len(want) :] == [1.0] * len(want)
    resid, weight = conv - null, conv + null + 0.5
    u, i = jm.pair_scores(offsets, codes, resid, weight, N_CODES)
    paths = [tuple(c for c, _ in p) for p, _, _ in rows]
    want = ref.pair_scores(paths, resid.tolist(), weight.tolist())
    for kind in range(3):
        for a in range(N_CODES):
            for b in range(N_CODES):
                expected = want[kind].get((a, b), (0.0, 0.0))
                assert (u[kind, a, b], i[kind, a, b]) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("form", ["touch", "journey", "both"])
def test_serial_and_parallel_passes_agree(form) -> None:
    rng = np.random.default_rng(5)
    rows = [
        ([(int(c), int(g)) for c, g in zip(rng.integers(0, N_CODES, n), rng.integers(0, N_ROWS, n), strict=True)], a, b)
        for n, a, b in zip(rng.integers(1, 9, 400), rng.integers(0, 3, 400), rng.integers(0, 4, 400), strict=True)
    ]
    offsets, codes, gaps, conv, null = _arrays(rows)
    parent, code, depth, row, end = js.prefix_nodes(offsets, codes, gaps)
    prev = np.where(parent >= 0, code[np.maximum(parent, 0)], -1).astype(np.int32)
    stocks = js.node_stocks(parent, code, depth, row, np.full((N_ROWS, N_CODES), 0.8), 0.7, N_CODES)
    weights = js.node_weights(parent, end, conv, null)
    from optiq_engine.kernels import journey_model as jm

    params = rng.normal(0, 0.5, 2 + 4 * N_CODES + jm.N_BUCKETS)
    use_h, use_p = form in ("touch", "both"), form in ("journey", "both")
    stage = rng.integers(0, jm.N_STAGES, code.shape[0])  # the ending cells: position bucket and funnel stage
    cell = (np.array([jm.bucket(d) for d in depth]) + jm.N_POSITIONS * stage).astype(np.int32)
    nodes = (params, code, cell, prev, *stocks, weights, use_h, use_p, 0.3)
    serial, parallel = js.step_hessian(*nodes), js.step_hessian_parallel(*nodes)
    assert parallel[0] == pytest.approx(serial[0], rel=1e-12)
    for a, b in zip(serial[1:], parallel[1:], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    terms = js.step_terms_parallel(*nodes)
    assert terms[0] == pytest.approx(serial[0], rel=1e-12)
    np.testing.assert_allclose(terms[1], serial[1], rtol=1e-10, atol=1e-12)
    assert js.step_terms(*nodes)[0] == pytest.approx(serial[0], rel=1e-12)
