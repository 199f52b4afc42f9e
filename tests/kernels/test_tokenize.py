"""The path-string tokenizer (``kernels.tokenize.split_paths``) against its reference on random rows:
separators of one and several bytes, ASCII and other white space, multi-byte UTF-8, empty and repeated
tokens, names that share their length and ends (the hash must tell them apart)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_engine.kernels.tokenize import _PARALLEL_ROWS, split_paths
from tests.reference import tokenize as ref

_NAMES = ["a", "b", "ab", "ba", "google_ads", "google_adz", "campaign_0001", "campaign_0011", "é", "x" * 40]
_TOKEN = st.one_of(
    st.sampled_from(_NAMES),
    st.text(alphabet=st.sampled_from("ab >\t\u00a0é_0"), max_size=12),
)


def _split(rows: list[str], sep: str, capacity: int = 4096):
    arr = pa.array(rows, type=pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: len(rows) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.empty(0, np.uint8)
    row_offsets, codes, spans, ok = split_paths(offsets, data, np.frombuffer(sep.encode(), dtype=np.uint8), capacity)
    names = [bytes(data[a:b]) for a, b in spans]
    return [codes[row_offsets[i] : row_offsets[i + 1]].tolist() for i in range(len(rows))], names, ok


@settings(max_examples=200, deadline=None)
@given(
    sep=st.sampled_from([">", " > ", "||", "é"]),
    rows=st.lists(st.lists(_TOKEN, max_size=8), max_size=30),
)
def test_split_paths_equals_the_reference(sep: str, rows: list[list[str]]) -> None:
    strings = [sep.join(tokens) for tokens in rows]
    got_codes, got_names, ok = _split(strings, sep)
    want_codes, want_names = ref.split_paths([s.encode() for s in strings], sep.encode())
    assert ok
    assert got_names == want_names
    assert got_codes == want_codes


def test_too_many_names_ask_for_a_larger_capacity() -> None:
    rows = [f"c{i} > c{i + 1}" for i in range(100)]
    assert not _split(rows, ">", capacity=64)[2]
    codes, names, ok = _split(rows, ">", capacity=256)
    assert ok and len(names) == 101 and codes[1] == [1, 2]


def test_many_names_sharing_length_and_ends_are_told_apart() -> None:
    names = [f"campaign_{i:05d}_x" for i in range(5000)]
    codes, got, ok = _split([" > ".join(names[i : i + 3]) for i in range(0, 5000, 3)], ">", capacity=8192)
    assert ok and got == [n.encode() for n in names]


def test_rows_split_on_threads_number_names_as_one_pass() -> None:
    """Above ``_PARALLEL_ROWS`` rows the chunks are split on threads, each with its own dictionary, and
    merged in row order: the numbering must be the one pass's (names new in a later chunk come after)."""
    rng = np.random.default_rng(0)
    pool = ["google_ads", "meta_ads", "email", "direct", "  display ", "é", "gooogle_ads", "meta_adz"]
    rows = [" > ".join(rng.choice(pool[:4], size=rng.integers(0, 6))) for _ in range(_PARALLEL_ROWS)]
    rows += [f"late_{i % 7} > {pool[4 + i % 4]} >  > google_ads" for i in range(_PARALLEL_ROWS)]
    got_codes, got_names, ok = _split(rows, ">", capacity=64)
    want_codes, want_names = ref.split_paths([s.encode() for s in rows], b">")
    assert ok and got_names == want_names and got_codes == want_codes
    assert not _split(rows, ">", capacity=8)[2]  # the merged dictionary overflows: ask for more
    halves = [f"a{i % 5} > a{(i + 1) % 5}" for i in range(_PARALLEL_ROWS)]
    halves += [f"b{i % 5} > b{(i + 1) % 5}" for i in range(_PARALLEL_ROWS)]
    assert _split(halves, ">", capacity=16)[2]
    assert not _split(halves, ">", capacity=8)[2]  # each chunk fits, the merged dictionary does not
