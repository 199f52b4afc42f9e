"""The README's first Python example runs as shown and gives the numbers its text states."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_pandas_example_runs_and_gives_the_stated_credit() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "pd.DataFrame" in b)
    scope: dict = {}
    exec(compile(example, str(README), "exec"), scope)  # noqa: S102 - our own README
    credit = scope["result"].credit.with_columns(pl.col("model", "channel").cast(pl.String))
    got = {(m, c): (round(n, 2), v) for m, c, n, v in credit.iter_rows() if n}
    assert got[("LINEAR", "email")] == (0.5, 49_995_000) == got[("LINEAR", "paid_search")]
    assert got[("LINEAR", "direct")] == (1.0, 20_000_000)
    assert got[("TIME_DECAY", "email")][0] == 0.81


def test_the_layout_section_names_every_module_and_package() -> None:
    """The README's Layout matches the tree: each top-level module and package of the engine is named there."""
    layout = README.read_text().split("## Layout", 1)[1]
    package = README.parent / "src" / "optiq_engine"
    names = [p.name + ("/" if p.is_dir() else "") for p in package.iterdir() if not p.name.startswith("__")]
    missing = [n for n in names if n.endswith((".py", "/")) and f"`{n}`" not in layout]
    assert not missing, f"README Layout does not name {missing}"
