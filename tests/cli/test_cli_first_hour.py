"""The first hour of a new user: a light import, help readable at 80 columns, logs without spinner frames,
one-line errors (tracebacks with --debug), compile time reported apart from run time, and model names
accepted in any case over HTTP as in Python."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine import cli
from optiq_engine.cli import app, output
from optiq_engine.cli import attribute as attribute_cli
from optiq_engine.cli import demo as demo_cli
from tests.support.service_api import http_api

runner = CliRunner()
HEAVY = ("numba", "polars", "fastapi", "scipy", "pyarrow", "sqlalchemy", "optiq_engine.pipeline")
SPINNER = {chr(c) for c in range(0x2800, 0x2900)}  # Rich's default spinner frames are Braille dots


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return [m for m in out.split(",") if m]


# --- lazy imports ---------------------------------------------------------------------------------------


def test_import_optiq_engine_does_not_import_numba_polars_or_fastapi() -> None:
    assert _loaded_after("import optiq_engine") == []


def test_the_cli_module_imports_its_heavy_dependencies_only_in_commands() -> None:
    assert _loaded_after("from optiq_engine.cli import app") == []


def test_every_public_name_resolves_and_is_listed_by_dir() -> None:
    for name in oq.__all__:
        assert getattr(oq, name) is not None, name
        namespace: dict = {}
        exec(f"from optiq_engine import {name}", namespace)  # noqa: S102 - the import statement itself
        assert namespace[name] is getattr(oq, name)
    assert set(oq.__all__) <= set(dir(oq))
    assert oq.models.get_model("linear").name == "LINEAR" and oq.synthetic.generate is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        oq.nope  # noqa: B018


def test_submodules_are_still_reachable_as_attributes() -> None:
    """``oq.errors.SchemaError`` worked when everything was imported eagerly; it still does, lazily."""
    code = "import optiq_engine as oq; print(oq.errors.SchemaError.__name__, oq.frames.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["SchemaError", "optiq_engine.frames"]


def test_type_checkers_see_every_public_name() -> None:
    """The TYPE_CHECKING imports of __init__.py name every public name (a new name needs both lines)."""
    tree = ast.parse(Path(oq.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    typed = {alias.asname or alias.name for n in block.body if isinstance(n, ast.ImportFrom) for alias in n.names}
    assert typed == set(oq.__all__) - {"__version__"}, "add the name's import under TYPE_CHECKING in __init__.py"


# --- help and output at 80 columns, in a log ---------------------------------------------------------------


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


def test_help_at_80_columns_shows_full_option_names_and_no_markup() -> None:
    root = typer.main.get_command(app)
    for path, command in [((), root), *_commands(root)]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        text = result.output
        assert "…" not in text and "``" not in text, (path, text)
        if "Commands:" in text:  # command summaries are whole sentences, wrapped, not cut with "..."
            assert "..." not in text.split("Commands:")[1], (path, text)
        assert max(len(line) for line in text.splitlines()) <= 80, (path, text)
        for param in command.params:
            for opt in [*param.opts, *param.secondary_opts]:
                if opt.startswith("--"):
                    assert opt in text, (path, opt, text)


def test_help_of_the_installed_command_at_80_columns() -> None:
    env = {"COLUMNS": "80", "PATH": str(Path(sys.executable).parent)}
    out = subprocess.run(
        [sys.executable, "-m", "optiq_engine.cli", "attribute", "--help"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "--reset-after-conversion / --no-reset-after-conversion" in out.stdout and "…" not in out.stdout


def test_non_tty_output_has_no_spinner_frames_or_carriage_returns() -> None:
    result = runner.invoke(app, ["demo", "--users", "300"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and not SPINNER & set(result.output), result.output
    assert "sorting by user and time" in result.stderr  # plain stage lines instead of a spinner
    assert "…" not in result.output


def _render(table, width: int) -> str:
    recorder = Console(width=width, record=True, file=io.StringIO())
    recorder.print(table)
    return recorder.export_text()


def test_tables_fold_ids_instead_of_cutting_them() -> None:
    event_id = "cm1eventabcdefghijklmnopqrstuvwxyz0123456789"
    table = output.new_table("alert events", "id", "title")
    table.add_row(event_id, "spend above the threshold of the campaign")
    narrow = _render(table, 40)
    assert "…" not in narrow
    first_column = [line.split("│")[1].strip() for line in narrow.splitlines() if line.count("│") == 3]
    assert "".join(first_column).startswith(event_id)  # folded over lines, every character kept
    assert event_id in _render(table, 120)


def test_credit_table_fits_80_columns_with_whole_channel_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "console", Console(width=80))
    data = oq.synthetic.generate(n_users=300, seed=1)
    table = cli._credit_table(oq.attribute(data.touchpoints, data.conversions))
    text = _render(table, 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert all(channel in text for channel in data.touchpoints["channel"].unique().to_list())


# --- errors: one line, tracebacks with --debug ---------------------------------------------------------------


def test_a_user_mistake_is_one_line_and_exit_2(tmp_path: Path) -> None:
    args = ["attribute", "--touchpoints", str(tmp_path / "nope.parquet"), "--conversions", "x", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code == 2 and "Traceback" in debug.output and "error:" in debug.output
    env = runner.invoke(app, args, env={"OPTIQ_DEBUG": "1"})
    assert env.exit_code == 2 and "Traceback" in env.output


def test_an_unexpected_error_is_short_exit_1_and_names_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: object) -> None:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(oq.synthetic, "generate", broken)
    result = runner.invoke(app, ["demo", "--users", "10"])
    assert result.exit_code == 1
    assert "error: unexpected ZeroDivisionError: division by zero" in result.stderr and "--debug" in result.stderr
    assert "Traceback" not in result.output and "second line" not in result.output
    debug = runner.invoke(app, ["--debug", "demo", "--users", "10"])
    assert debug.exit_code == 1 and "Traceback" in debug.output and "ZeroDivisionError" in debug.output


def test_a_warning_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    generate = oq.synthetic.generate

    def warn_then_generate(**options: object):
        warnings.warn("3 occurred_at values have no UTC offset: taken as UTC", UserWarning, stacklevel=2)
        return generate(**options)

    monkeypatch.setattr(oq.synthetic, "generate", warn_then_generate)
    result = runner.invoke(app, ["demo", "--users", "300"])
    assert result.exit_code == 0, result.output
    assert "warning: 3 occurred_at values have no UTC offset: taken as UTC\n" in result.stderr
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr
    debug = runner.invoke(app, ["--debug", "demo", "--users", "300"])
    assert "UserWarning: 3 occurred_at values" in debug.stderr  # the usual form, with file and line


def test_the_service_commands_use_the_same_one_line_errors() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/nothing"
    for args in (["alerts", "list", "--org", "o"], ["keys", "revoke", "--org", "o", "k"], ["alerts", "evaluate"]):
        result = runner.invoke(app, [*args, "--database-url", unreachable])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: database:") and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
    bad = runner.invoke(app, ["alerts", "evaluate", "--database-url", unreachable, "--now", "yesterday"])
    assert bad.exit_code == 2 and "--now must be an ISO 8601 time" in bad.stderr


# --- compilation reported apart from run time -----------------------------------------------------------------


def test_first_compile_is_logged_once_and_timed() -> None:
    code = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
from optiq_engine.kernels import _jit

def twice(x):
    return 2 * x

def thrice(x):
    return 3 * x

twice.__module__ = thrice.__module__ = "optiq_engine.kernels.fake"
a, b = _jit.numba.njit(twice), _jit.numba.njit(thrice)
assert a(2) == 4 and a(3) == 6 and b(2) == 6
stats = _jit.compile_stats()
print("stats", stats.functions, stats.seconds > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.count("compiling Numba kernels on first use") == 1, out
    assert "stats 2 True" in out


def test_demo_prints_compile_time_apart_from_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter(range(1000))
    for module in (demo_cli, attribute_cli):  # where the demo and the attribution it runs look
        monkeypatch.setattr(module, "compile_seconds", lambda: float(next(ticks)))  # each look: one more second
    result = runner.invoke(app, ["demo", "--users", "300"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    compile_line = next(line for line in lines if line.startswith("compile "))
    assert "Numba kernels compiled on first use" in compile_line and "not included above" in compile_line
    run_line = next(line for line in lines if line.startswith("generate "))
    assert "attribute" in run_line and "(validate" in run_line


def test_stage_times_exclude_the_compilation_they_triggered() -> None:
    assert cli._timings({"sort": 5.0, "match": 1.0}, {"sort": 4.5, "starting": 2.0}) == "sort 0.50s, match 1.00s"


# --- HTTP model names in any case --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(postgres_url: str) -> Iterator[dict]:
    """The HTTP API on its own database (as in tests/service/test_service_api.py)."""
    with http_api(postgres_url) as served:
        yield served


def test_http_model_names_are_case_insensitive(api) -> None:
    c, h = api["client"], api["h"]["ua"]
    base = {"start": "2024-03-08", "end": "2024-03-14", "grain": "campaign"}
    upper = c.get("/v1/metrics", params=base | {"model": "LINEAR"}, headers=h)
    for spelling in ("linear", "Linear"):
        r = c.get("/v1/metrics", params=base | {"model": spelling}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json() == upper.json()
    credit = c.get(
        "/v1/credit", params={"start": "2024-03-01", "end": "2024-03-14", "model": ["linear", "last_touch"]}, headers=h
    )
    assert credit.status_code == 200, credit.text
    assert {row["model"] for row in credit.json()["rows"]} <= {"LINEAR", "LAST_TOUCH"}
    assert c.get("/v1/metrics", params=base | {"model": "nope"}, headers=h).status_code == 422
