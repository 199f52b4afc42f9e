"""Every notebook of ``notebooks/`` runs top to bottom (nbclient); a failing cell fails the test.

``python tests/docs/test_notebooks.py [NAME ...]`` (``make notebooks``) re-executes the notebooks and saves them
with their outputs, as they are committed. The Postgres notebook needs a server: it skips without one,
unless ``OPTIQ_REQUIRE_POSTGRES=1`` (CI), as the other Postgres tests do (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebooks

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PG_URL = os.environ.get("OPTIQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("OPTIQ_REQUIRE_POSTGRES") == "1"
CELL_TIMEOUT_S = 600


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, *, save: bool = False) -> float:
    """Run one notebook in a fresh kernel, in its own directory; seconds taken. ``save``: write it back."""
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    seconds = time.perf_counter() - start
    if save:
        nbformat.write(book, path)
    return seconds


def _postgres_reachable() -> str | None:
    """None when the test server answers, else why not."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError as exc:  # pragma: no cover - the dev extra installs both
        return f"postgres extra not installed: {exc}"
    admin = make_url(PG_URL).set(drivername="postgresql")
    try:
        psycopg.connect(admin.render_as_string(hide_password=False), connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return f"PostgreSQL at {admin} is not reachable ({exc}); set OPTIQ_TEST_DATABASE_URL"
    return None


def test_every_notebook_is_collected():
    names = [p.stem for p in notebook_paths()]
    assert names == ["01_quickstart", "02_data_driven", "03_postgres", "04_benchmarks"]


def test_committed_notebooks_have_outputs():
    import nbformat

    for path in notebook_paths():
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), f"{path.name} is committed unexecuted: make notebooks"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], f"{path.name} has an error output"


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=[pytest.mark.postgres] if "postgres" in p.stem else []) for p in notebook_paths()],
    ids=lambda p: p.stem,
)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("nbclient")
    if "postgres" in path.stem:
        reason = _postgres_reachable()
        if reason is not None:
            if REQUIRE_POSTGRES:
                pytest.fail(f"OPTIQ_REQUIRE_POSTGRES=1 but {reason}")
            pytest.skip(reason)
        monkeypatch.delenv("OPTIQ_DATABASE_URL", raising=False)  # the notebook makes (and drops) its own database
        from tests.support.pg import object_name

        monkeypatch.setenv("OPTIQ_TEST_PREFIX", object_name("nb") + "_")  # the tests' naming (tests/support/pg.py)
    monkeypatch.setenv("OPTIQ_NOTEBOOK_FIGURES", str(tmp_path))  # keep docs/img as committed
    execute(path)


if __name__ == "__main__":
    chosen = sys.argv[1:]
    total = 0.0
    for nb_path in notebook_paths():
        if chosen and nb_path.stem not in chosen:
            continue
        seconds = execute(nb_path, save=True)
        total += seconds
        print(f"{nb_path.name}: {seconds:.1f} s")
    print(f"all: {total:.1f} s")
