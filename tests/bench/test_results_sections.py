"""benchmarks/RESULTS.md: every script's section has one start and one end marker, in order, so that a rerun
replaces its section instead of appending a second copy (the accuracy section lost its start marker once, and
a rerun tripled the file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.run import write_section

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"


def test_every_section_has_one_start_and_one_end_marker_in_order() -> None:
    text = RESULTS.read_text()
    names = set(re.findall(r"<!-- /?section:([\w-]+) -->", text))
    assert names
    for name in names:
        start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
        assert (text.count(start), text.count(end)) == (1, 1), name
        assert text.index(start) < text.index(end), name


def test_write_section_refuses_a_lost_marker(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_section(path, "a", "one")
    write_section(path, "a", "two")
    assert path.read_text() == "<!-- section:a -->\ntwo\n<!-- /section:a -->\n"
    path.write_text("text\n<!-- /section:a -->\n")
    with pytest.raises(ValueError, match="1 end markers"):
        write_section(path, "a", "three")
