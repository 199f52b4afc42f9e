"""Property tests: the engine equals the pure-Python reference on random inputs, and the invariants hold."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import numba
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optiq_engine as oq
import optiq_engine.matching as matching
from optiq_engine.kernels.alloc import _stable_argsort
from optiq_engine.kernels.alloc import split_value as split_value_kernel
from optiq_engine.kernels.sort import sort_by_group_time
from optiq_engine.kernels.threads import balanced_ranges
from tests.reference.attribution import attribute_reference, check_invariants, split_value
from tests.support.adapters import attribute_engine, conversions_frame, model_object, touchpoints_frame
from tests.support.strategies import I63, Case, cases


def _by_key(links: list[dict]) -> dict[tuple, dict]:
    return {(x["model"], x["conversion_id"], x["position"]): x for x in links}


def assert_matches_reference(case: Case) -> None:
    ref_links, ref_unattributed = attribute_reference(case.touchpoints, case.conversions, **case.kwargs())
    links, unattributed = attribute_engine(case.touchpoints, case.conversions, **case.kwargs())
    check_invariants(links, {c["conversion_id"]: c for c in case.conversions})
    assert {(u["conversion_id"], u["reason"]) for u in unattributed} == {
        (u["conversion_id"], u["reason"]) for u in ref_unattributed
    }
    ours, ref = _by_key(links), _by_key(ref_links)
    assert ours.keys() == ref.keys()
    for key, mine in ours.items():
        theirs = ref[key]
        for col in ("touchpoint_id", "touchpoint_count", "channel"):
            assert mine[col] == theirs[col], (key, col)
        assert math.isclose(mine["weight"], theirs["weight"], rel_tol=1e-12, abs_tol=1e-15), key
    # The value split of our weights is exactly the reference split of those weights.
    values = {c["conversion_id"]: c["value_micros"] for c in case.conversions}
    per_conversion: dict[tuple, list[dict]] = {}
    for (model, cid, _), row in sorted(ours.items()):
        per_conversion.setdefault((model, cid), []).append(row)
    for (_, cid), rows in per_conversion.items():
        assert [r["credited_value_micros"] for r in rows] == split_value(values[cid], [r["weight"] for r in rows])


@given(cases())
def test_engine_matches_reference(case: Case) -> None:
    assert_matches_reference(case)


@given(cases(max_touchpoints=60, max_conversions=4))
@settings(max_examples=40)
def test_engine_matches_reference_with_hash_collisions(case: Case) -> None:
    """With group hashes cut to 2 bits every run collides; the exact fallback must give the same result."""
    old = matching._HASH_MASK
    matching._HASH_MASK = np.uint64(3)
    try:
        assert_matches_reference(case)
    finally:
        matching._HASH_MASK = old


def _run(case: Case, tp: pl.DataFrame | None = None, cv: pl.DataFrame | None = None, **kw) -> oq.AttributionResult:
    return oq.attribute(
        tp if tp is not None else touchpoints_frame(case.touchpoints, case.group_by),
        cv if cv is not None else conversions_frame(case.conversions, case.group_by),
        models=[model_object(n, p) for n, p in case.models],
        lookback=timedelta(microseconds=case.lookback_us),
        reset_after_conversion=case.reset_after_conversion,
        **kw,
    )


def _canonical(result: oq.AttributionResult) -> tuple[pl.DataFrame, pl.DataFrame]:
    links = result.links.with_columns(pl.col("model", "channel").cast(pl.String)).sort(
        "model", "conversion_id", "position"
    )
    return links, result.unattributed.sort("conversion_id")


@given(cases(), st.randoms(use_true_random=False))
@settings(max_examples=60)
def test_results_do_not_depend_on_row_order(case: Case, rnd: random.Random) -> None:
    tp = touchpoints_frame(case.touchpoints, case.group_by)
    cv = conversions_frame(case.conversions, case.group_by)
    shuffled_tp = tp.sample(fraction=1.0, shuffle=True, seed=rnd.randrange(2**32)) if tp.height else tp
    shuffled_cv = cv.sample(fraction=1.0, shuffle=True, seed=rnd.randrange(2**32)) if cv.height else cv
    a = _canonical(_run(case, tp, cv))
    b = _canonical(_run(case, shuffled_tp, shuffled_cv))
    assert a[0].equals(b[0]) and a[1].equals(b[1])


@given(cases())
@settings(max_examples=30)
def test_pandas_and_arrow_inputs_give_the_same_result(case: Case) -> None:
    tp = touchpoints_frame(case.touchpoints, case.group_by)
    cv = conversions_frame(case.conversions, case.group_by)
    expected = _canonical(_run(case, tp, cv))
    for convert in (lambda f: f.to_arrow(), lambda f: f.to_pandas()):
        got = _canonical(_run(case, convert(tp), convert(cv)))
        assert got[0].equals(expected[0]) and got[1].equals(expected[1])


@pytest.mark.parametrize("threads", [1, 2])
def test_results_do_not_depend_on_thread_count(threads: int) -> None:
    data = oq.synthetic.generate(n_users=3_000, seed=7)
    expected = _canonical(oq.attribute(data.touchpoints, data.conversions))
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        got = _canonical(oq.attribute(data.touchpoints, data.conversions))
    finally:
        numba.set_num_threads(previous)
    assert got[0].equals(expected[0]) and got[1].equals(expected[1])


@given(
    st.one_of(st.integers(0, 10**6), st.integers(0, I63), st.sampled_from([0, 1, I63, 2**53 + 1])),
    st.lists(
        st.one_of(st.floats(0, 1e6, allow_nan=False), st.just(0.0), st.floats(0, 1e-300)), min_size=1, max_size=40
    ),
)
def test_split_value_kernel_matches_reference(value: int, raw: list[float]) -> None:
    total = sum(raw)
    weights = [w / total for w in raw] if total > 0 else [1.0 / len(raw)] * len(raw)
    out = np.empty(len(weights), dtype=np.int64)
    split_value_kernel(value, np.array(weights), out, np.empty(len(weights)), np.empty(len(weights), dtype=np.bool_))
    assert out.tolist() == split_value(value, weights)
    assert int(out.sum()) == value and (out >= 0).all()


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3)), max_size=300),
    st.integers(1, 6),
)
def test_sort_kernel_orders_by_group_time_row(rows: list[tuple[int, int]], bits: int) -> None:
    keys = np.array([0, 1, 2**63, 2**64 - 1, 12345, 2**40], dtype=np.uint64)
    h = keys[[g for g, _ in rows]] if rows else np.zeros(0, dtype=np.uint64)
    ts = np.array([t for _, t in rows], dtype=np.int64)
    code = np.arange(len(rows), dtype=np.int32)
    order, h_s, ts_s, _, code_s, buckets, collisions, ties = sort_by_group_time(h, ts, h, code, bits)
    expected = np.lexsort((np.arange(len(rows)), ts, h))
    assert order.tolist() == expected.tolist()
    assert (ts_s == ts[order]).all() and (code_s == code[order]).all() and collisions == 0
    assert buckets[-1] == len(rows)
    assert ties == sum(1 for i in range(1, len(rows)) if (h_s[i], ts_s[i]) == (h_s[i - 1], ts_s[i - 1]))


@pytest.mark.parametrize("seed", [0, 1])
def test_sort_kernel_on_threads_equals_lexsort(seed: int) -> None:
    """Above 65,536 rows the sort counts, scatters and sorts buckets in chunks on several threads."""
    rng = np.random.default_rng(seed)
    n = 70_000 + seed * 3_001
    keys = rng.integers(0, 2**64, 5_000, dtype=np.uint64)
    group = rng.integers(0, keys.size, n)
    h, ts = keys[group], rng.integers(-50, 50, n).astype(np.int64)
    h2 = h.copy()
    h2[rng.integers(0, n, 3)] ^= np.uint64(1)  # three rows whose check hash disagrees with their group's
    code = rng.integers(0, 2**23, n).astype(np.int32)
    order, h_s, ts_s, h2_s, code_s, buckets, collisions, ties = sort_by_group_time(h, ts, h2, code, 12)
    expected = np.lexsort((np.arange(n), ts, h))
    assert order.tolist() == expected.tolist()
    assert (h_s == h[order]).all() and (ts_s == ts[order]).all() and (h2_s == h2[order]).all()
    assert (code_s == code[order]).all()
    assert buckets.tolist() == np.searchsorted(h_s, np.arange(4097, dtype=np.uint64) << np.uint64(52)).tolist()[:-1] + [
        n
    ]
    same = h_s[1:] == h_s[:-1]
    assert collisions == int((same & (h2_s[1:] != h2_s[:-1])).sum()) > 0
    assert ties == int((same & (ts_s[1:] == ts_s[:-1])).sum())


@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_balanced_ranges_cover_every_item_once(parts: int) -> None:
    offsets = np.cumsum(np.r_[0, np.random.default_rng(parts).integers(0, 50, 40)])
    ranges = balanced_ranges(offsets, parts)
    assert [i for a, b in ranges for i in range(a, b)] == list(range(40)) and len(ranges) <= parts
    assert balanced_ranges(np.zeros(1, dtype=np.int64), 4) == []


@given(cases(), st.integers(1, 5))
@settings(max_examples=40)
def test_results_do_not_depend_on_input_chunking(case: Case, pieces: int) -> None:
    """Frames read from Parquet arrive in many chunks (row groups); the result must not change."""
    tp = touchpoints_frame(case.touchpoints, case.group_by)
    cv = conversions_frame(case.conversions, case.group_by)

    def chunked(frame: pl.DataFrame) -> pl.DataFrame:
        size = max(1, -(-frame.height // pieces))
        parts = [frame.slice(i, size) for i in range(0, frame.height, size)] or [frame]
        return pl.concat(parts, rechunk=False)

    a = _canonical(_run(case, tp, cv))
    b = _canonical(_run(case, chunked(tp), chunked(cv)))
    assert a[0].equals(b[0]) and a[1].equals(b[1])


@given(st.lists(st.one_of(st.sampled_from([0.0, -0.0, 0.5, -1.0]), st.floats(-2, 2, allow_nan=False)), max_size=80))
def test_stable_argsort_equals_numpy_mergesort(keys: list[float]) -> None:
    """split_value's hand-written stable sort orders exactly as the np.argsort(kind="mergesort") it replaced."""
    x = np.array(keys, dtype=np.float64)
    assert _stable_argsort(x).tolist() == np.argsort(x, kind="mergesort").tolist()


def test_split_value_near_int64_max_with_a_tiny_weight() -> None:
    """Found by Hypothesis: q = 2**63 made Numba's math.floor overflow int64 and the remainder went astray."""
    value = 9_223_372_036_854_775_296  # 2**63 - 512: float(value) == 2**63
    weights = [1.0842021749514028e-19, 1.0]  # TIME_DECAY of two touches 63 half-lives apart
    out = np.empty(2, dtype=np.int64)
    split_value_kernel(value, np.array(weights), out, np.empty(2), np.empty(2, dtype=np.bool_))
    assert out.tolist() == split_value(value, weights) == [1, value - 1]
