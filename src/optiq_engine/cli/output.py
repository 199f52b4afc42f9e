"""Output and errors of the ``optiq`` command line, shared by the command modules of
:mod:`optiq_engine.cli`, :mod:`optiq_engine.spark.cli` and :mod:`optiq_engine.service.cli`.

- **Errors.** Every command runs inside :class:`OptiqGroup`, so whatever it raises ends as one line on
  stderr: an :class:`~optiq_engine.errors.OptiqError` (a user's mistake), a database error or an
  ``OSError`` as ``error: <message>`` and exit code 2; anything else as ``error: unexpected <type>:
  <message>``, a hint to rerun with ``--debug`` and exit code 1. ``optiq --debug`` (or
  ``OPTIQ_DEBUG=1``) prints the traceback as well; exit codes do not change. A SIGINT/SIGTERM that
  stopped a command at a safe point (:mod:`optiq_engine._interrupt`) is one ``interrupted:`` line and exit
  code 130 / 143. A run that finds its organization locked is one ``locked:`` line and exit code 3
  (:func:`locked`; the codes are ``EXIT_*`` below).
- **Progress.** A Rich spinner when stderr is a terminal; one plain line per stage otherwise (cron
  logs get no spinner frames or carriage returns).
- **Tables.** No cell is ever cut with an ellipsis: id columns keep their ids on one line when they
  fit and fold them otherwise. :func:`credit_table` is the credit per channel and model that ``optiq
  demo`` and ``optiq attribute`` (either engine) print.
- **Help.** Plain Click help (no Rich panels): it wraps at the terminal's width, keeps full option
  names at 80 columns and reads the same in a log.

Only light modules are imported here (Typer, Rich, the standard library): ``optiq --help`` must not
import Polars, Numba or the pipeline.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from .._interrupt import Interrupted
from ..errors import OptiqError

if TYPE_CHECKING:  # Polars only inside credit_table: `optiq --help` stays fast
    import polars as pl

    from ..result import AttributionResult

__all__ = [
    "console",
    "err",
    "new_app",
    "OptiqGroup",
    "EXIT_FAILED",
    "EXIT_USER_ERROR",
    "EXIT_LOCKED",
    "fail",
    "locked",
    "one_line_errors",
    "one_line_warnings",
    "set_debug",
    "debug_enabled",
    "stages",
    "new_table",
    "natural_width",
    "credit_table",
    "show_library_log",
    "compile_seconds",
]

console = Console()
err = Console(stderr=True, soft_wrap=True)  # messages are lines: a log keeps them whole, a terminal wraps them

_DATABASE_PACKAGES = ("sqlalchemy", "psycopg", "psycopg2", "adbc_driver_manager")
# Typer's own exits and usage errors, and a closed pipe (`optiq ... | head`), which Click ends quietly.
_PASS_THROUGH = (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError)
_debug = False

#: Exit codes (besides 0 and Typer's own 2 for a usage error); a SIGINT / SIGTERM stop at a safe point exits
#: 130 / 143 (:class:`~optiq_engine._interrupt.Interrupted`).
EXIT_FAILED = 1  # anything unexpected (a hint names --debug), or a part of the work failed (optiq alerts evaluate)
EXIT_USER_ERROR = 2  # the user can fix it: arguments, settings, input, an unreachable database
EXIT_LOCKED = 3  # another run of the organization holds its lock (optiq run, optiq db summarize)


#: The context of the command group that runs (OptiqGroup.invoke), for :func:`as_flags`.
_RUNNING: ContextVar[Any] = ContextVar("optiq_cli_running", default=None)


def set_debug(on: bool) -> None:
    """Turn tracebacks (and the library's DEBUG log) on or off for this process.

    Parameters
    ----------
    on
        ``optiq --debug``; ``OPTIQ_DEBUG=1`` turns it on whatever this says (:func:`debug_enabled`).
    """
    global _debug
    _debug = on
    show_library_log()


def debug_enabled() -> bool:
    """True with ``optiq --debug`` or ``OPTIQ_DEBUG=1`` in the environment."""
    return _debug or os.environ.get("OPTIQ_DEBUG", "") not in ("", "0", "false", "False", "no")


def fail(message: str, *, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with ``code`` (2: the user can fix it).

    Parameters
    ----------
    message
        One line (Rich markup in it is printed literally).
    code
        The exit code (default :data:`EXIT_USER_ERROR`, 2).

    Raises
    ------
    typer.Exit
        Always, with ``code``.
    """
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=code)


def locked(exc: Exception) -> NoReturn:
    """Print ``locked: <message>`` on stderr and exit 3: another run of the organization holds its lock
    (call it where :class:`~optiq_engine.batch.RunLocked` is caught).

    Parameters
    ----------
    exc
        The :class:`~optiq_engine.batch.RunLocked` error; its message is printed after ``locked:``.

    Raises
    ------
    typer.Exit
        Always, with :data:`EXIT_LOCKED` (3).
    """
    err.print(f"[bold yellow]locked:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=EXIT_LOCKED) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _with_notes(exc: BaseException, message: str) -> str:
    notes = [n.strip() for n in getattr(exc, "__notes__", ()) if n.strip()]
    return "; ".join([message, *notes])


def _is_database_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _DATABASE_PACKAGES


def as_flags(message: str) -> str:
    """``message`` with the Python keywords it suggests (``value_unit='currency'``) spelled as the options
    of the command that runs (``--value-unit currency``): the engine's errors speak Python, a CLI user
    types flags. Outside a command of :class:`OptiqGroup`, ``message`` as it is."""
    context = _RUNNING.get()
    name = getattr(context, "invoked_subcommand", None)
    command = context.command.get_command(context, name) if context is not None and name else None
    if command is None:
        return message
    flags = {
        p.name: next(o for o in p.opts if o.startswith("--"))
        for p in command.params
        if p.name and getattr(p, "param_type_name", "") == "option" and any(o.startswith("--") for o in p.opts)
    }

    def spelled(match: re.Match[str]) -> str:
        return f"{flags[match[1]]} {shlex.quote(next(g for g in match.groups()[1:] if g is not None))}"

    keywords = "|".join(map(re.escape, flags))
    return re.sub(rf"\b({keywords})=(?:'([^']*)'|\"([^\"]*)\"|([^\s,;)]+))", spelled, message) if flags else message


def _report(exc: Exception) -> NoReturn:
    """Print ``exc`` as one line (the traceback first with --debug) and exit: 2 if the user can fix it."""
    if isinstance(exc, OptiqError):
        code, message = EXIT_USER_ERROR, _with_notes(exc, as_flags(str(exc).strip() or type(exc).__name__))
    elif _is_database_error(exc):
        code, message = EXIT_USER_ERROR, _with_notes(exc, f"database: {_first_line(exc)}")
    elif isinstance(exc, OSError):
        code, message = EXIT_USER_ERROR, _with_notes(exc, _first_line(exc))
    else:
        code, message = EXIT_FAILED, _with_notes(exc, f"unexpected {type(exc).__name__}: {_first_line(exc)}")
    debug = debug_enabled()
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    if code == EXIT_FAILED and not debug:
        err.print("rerun with --debug (optiq --debug ...) or OPTIQ_DEBUG=1 for the traceback", soft_wrap=True)
    raise typer.Exit(code=code) from None


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn any exception but Typer's own exits into one ``error:`` line and an exit code.

    Every command already runs inside it (see :class:`OptiqGroup`); use it directly only around a block
    whose errors should end the command before what follows it runs.
    """
    try:
        yield
    except _PASS_THROUGH:
        raise
    except Interrupted as exc:  # SIGINT/SIGTERM under handle_signals, stopped at a safe point
        if debug_enabled():
            traceback.print_exception(exc, file=sys.stderr)
        err.print(f"[bold yellow]interrupted:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=exc.exit_code) from None
    except Exception as exc:  # noqa: BLE001 - reported as one line, re-shown with --debug
        _report(exc)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    if debug_enabled():
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
    else:
        err.print(f"warning: {as_flags(str(message))}", markup=False, highlight=False)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each Python warning as one ``warning: <message>`` line on stderr (the usual file:line form and
    source line with --debug); the warning filters and display are restored afterwards."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


class OptiqGroup(TyperGroup):
    """A Typer group whose commands' errors and warnings are one line (:func:`one_line_errors`,
    :func:`one_line_warnings`) and whose command list shows each command's whole first sentence,
    wrapped, instead of cutting it at the width."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command of ``ctx`` with one-line errors and warnings.

        Parameters
        ----------
        ctx
            Click's context.

        Returns
        -------
        Any
            What the command returns.

        Raises
        ------
        typer.Exit
            After printing any error (exit code 1, 2, 3, or 130 / 143 after a signal).
        """
        token = _RUNNING.set(ctx)
        try:
            with one_line_errors(), one_line_warnings():
                return super().invoke(ctx)
        finally:
            _RUNNING.reset(token)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Write the ``Commands`` section of the help: each visible command and its whole first sentence.

        Parameters
        ----------
        ctx
            Click's context.
        formatter
            Click's help formatter (wraps at the terminal's width).
        """
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def new_app(help: str, **options: Any) -> typer.Typer:
    """A Typer app (or sub-app) of ``optiq``: :class:`OptiqGroup`, plain help, no shell completion.

    Parameters
    ----------
    help
        The app's help text.
    **options
        Other :class:`typer.Typer` options (``no_args_is_help`` defaults to True).

    Returns
    -------
    typer.Typer
    """
    options.setdefault("no_args_is_help", True)
    return typer.Typer(
        cls=OptiqGroup,
        help=help,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        **options,
    )


def _interactive() -> bool:
    return err.is_terminal and not err.is_dumb_terminal


@contextmanager
def stages(first: str) -> Iterator[Callable[[str], None]]:
    """Show the running stage; yields ``show(description)`` to call as each stage starts.

    On a terminal a transient Rich spinner with the elapsed time; otherwise one plain line per stage,
    ``[  12.3s] description``, so logs hold no spinner frames or carriage returns.

    Parameters
    ----------
    first
        The first stage's description, shown at once.

    Yields
    ------
    callable
        ``show(description)``; a description equal to the last one shown prints nothing (plain lines).
    """
    if _interactive():
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(first, total=None)
            yield lambda description: bar.update(task, description=description)
        return
    started = time.perf_counter()
    last: list[str] = []

    def show(description: str) -> None:
        if last and last[-1] == description:
            return
        last.append(description)
        elapsed = time.perf_counter() - started
        err.print(f"[{elapsed:7.1f}s] {description}", markup=False, highlight=False, soft_wrap=True)

    show(first)
    yield show


def new_table(title: str | None, *columns: str, numbers: Collection[str] = ()) -> Table:
    """A Rich table whose cells are never cut: a cell too wide for its column wraps at spaces and folds
    inside a word (an id stays complete, over several lines if the terminal is that narrow).

    Parameters
    ----------
    title
        The title above the table.
    columns
        Column headers.
    numbers
        Headers of right-aligned numeric columns.

    Returns
    -------
    rich.table.Table
        Without rows.
    """
    table = Table(title=title)
    for name in columns:
        table.add_column(name, overflow="fold", justify="right" if name in numbers else "left")
    return table


def natural_width(table: Table) -> int:
    """The width ``table`` takes when nothing wraps (compare with ``console.width``).

    Parameters
    ----------
    table
        A Rich table.

    Returns
    -------
    int
        Its maximum width in terminal cells.
    """
    return table.__rich_measure__(console, console.options.update_width(100_000)).maximum


def _credit_footer(result: Any, credit: pl.DataFrame, names: list[str]) -> list[list[str]]:
    """The table's last rows: each model's total, and (in memory) the conversions a data-driven model left to
    the baseline, so that a column summing to less than the others says why (docs/data_driven.md §5)."""
    import polars as pl

    totals = dict(credit.group_by(pl.col("model").cast(pl.String)).agg(pl.col("conversions").sum()).iter_rows())
    rows = [["total", *(f"{totals.get(n, 0.0):,.1f}" for n in names)]]
    unattributed = getattr(result, "unattributed", None)
    if isinstance(unattributed, pl.DataFrame) and "model" in unattributed.columns:
        per_model = unattributed.get_column("model").cast(pl.String).value_counts()
        baseline = dict(per_model.drop_nulls("model").iter_rows())
        if any(baseline.get(n) for n in names):
            rows.append(["baseline (not credited)", *(f"{baseline.get(n, 0):,}" for n in names)])
    return rows


def credit_table(result: AttributionResult, credit: pl.DataFrame | None = None) -> Table:
    """Attributed conversions, one row per channel and one column per model (channels never cut: the
    model headers break at their underscores when the table is wider than the terminal).

    Parameters
    ----------
    result
        The run's result: its model names (the columns) and, in memory, ``unattributed`` for the baseline row.
    credit
        The credit to show (default None: ``result.credit``; Spark passes the collected one). With a
        ``conversion_name`` column, one row per type and channel, and no footer.

    Returns
    -------
    rich.table.Table
        Channels credited by no model are left out; a footer with each model's total (and its baseline
        conversions, when any).
    """
    import polars as pl

    names = list(result.model_names)
    credit = result.credit if credit is None else credit
    by = ["conversion_name"] if "conversion_name" in credit.columns else []  # by="name": a row per type and channel
    wide = (
        credit.with_columns(pl.col("model", "channel", *by).cast(pl.String))
        .pivot(on="model", index=[*by, "channel"], values="conversions")
        .sort(*by, "channel", nulls_last=True)
    )
    rows = [
        [
            *((row["conversion_name"] or "(no name)",) if by else ()),
            row["channel"],
            *(f"{row[n]:,.1f}" if row[n] is not None else "" for n in names),
        ]
        for row in wide.iter_rows(named=True)
        if any(row[n] for n in names)
    ]

    footer = [] if by else _credit_footer(result, credit, names)

    def build(headers: list[str]) -> Table:
        title = "Attributed conversions by channel and model" + (" (per conversion type)" if by else "")
        table = new_table(title, *(["type"] if by else []), "channel", *headers, numbers=headers)
        for row in rows:
            table.add_row(*row)
        if footer:
            table.add_section()
            for row in footer:
                table.add_row(*row)
        return table

    table = build(names)
    if natural_width(table) > console.width:
        table = build([n.replace("_", "_\n") for n in names])
    return table


class _ConsoleLog(logging.Handler):
    """The library's log records as plain lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
            err.print(prefix + record.getMessage(), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def _shown(record: logging.LogRecord) -> bool:
    return debug_enabled() or record.levelno >= logging.WARNING or record.name == "optiq_engine.kernels._jit"


def show_library_log() -> None:
    """Print the library's warnings and its one-time compile notice on stderr (everything with --debug).

    Idempotent: one handler on the ``optiq_engine`` logger per process.
    """
    package = logging.getLogger("optiq_engine")
    package.setLevel(logging.DEBUG if debug_enabled() else logging.NOTSET)
    logging.getLogger("optiq_engine.kernels._jit").setLevel(logging.DEBUG if debug_enabled() else logging.INFO)
    if any(isinstance(h, _ConsoleLog) for h in package.handlers):
        return
    handler = _ConsoleLog(level=logging.DEBUG)
    handler.addFilter(_shown)
    package.addHandler(handler)


def compile_seconds() -> float:
    """Seconds this process has spent compiling Numba kernels (0 before any kernel module is imported)."""
    jit = sys.modules.get("optiq_engine.kernels._jit")
    return 0.0 if jit is None else float(jit.compile_stats().seconds)
