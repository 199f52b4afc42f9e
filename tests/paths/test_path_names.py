"""Channel names in path frames: strings and lists read alike (stripped, blank steps skipped)."""

from __future__ import annotations

import polars as pl
import pytest

import optiq_engine as oq


def _paths(table: oq.PathTable) -> list[list[str]]:
    return table.to_frame().get_column("path").to_list()


@pytest.mark.parametrize(
    "paths",
    [
        ["a > \u00a0a\u00a0 > \u00a0 > b", "b\u2003", " a >c"],
        [["a", "\u00a0a\u00a0", "\u00a0", "b"], ["b\u2003"], [" a", "", None, "c"]],
    ],
    ids=["strings", "lists"],
)
def test_names_are_stripped_and_blank_steps_skipped(paths) -> None:
    """[" a", "a"] was two channels in a list path (string paths were stripped): each got part of the credit."""
    frame = pl.DataFrame({"path": paths, "total_conversions": [1, 2, 3], "total_null": [0, 0, 0]})
    table = oq.PathTable.from_frame(frame, transform="frequency")
    assert table.channels == ("a", "b", "c")
    assert _paths(table) == [["a", "a", "b"], ["b"], ["a", "c"]]


@pytest.mark.parametrize("path", [" \u00a0 ", ["\u00a0", " ", None], []])
def test_a_path_of_blank_steps_is_refused(path) -> None:
    frame = pl.DataFrame(
        {"path": [path, "a" if isinstance(path, str) else ["a"]], "total_conversions": [1, 1], "total_null": [0, 0]}
    )
    with pytest.raises(oq.InputError, match="1 empty path"):
        oq.PathTable.from_frame(frame)
