"""The ``optiq`` command line (Typer + Rich)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import AttributionConfig
from .errors import ConfigError, OptiqError
from .models import HEURISTIC_MODELS
from .result import AttributionResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Optiq Engine: marketing attribution.")
console = Console()
err = Console(stderr=True)

_STAGES = {
    "validate": "validating input",
    "encode": "encoding keys and channels",
    "sort": "sorting by user and time",
    "match": "matching lookback windows",
    "weights": "computing weights and value",
    "frames": "building result frames",
}


def _run(touchpoints, conversions, models: list[str] | None, config: AttributionConfig) -> AttributionResult:
    from .pipeline import run_attribution

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task("attributing", total=None)
        return run_attribution(
            touchpoints,
            conversions,
            models=models,
            config=config,
            on_stage=lambda s: progress.update(task, description=_STAGES.get(s, s)),
        )


def _credit_table(result: AttributionResult, credit: pl.DataFrame | None = None) -> Table:
    table = Table(title="Attributed conversions by channel and model")
    table.add_column("channel")
    names = list(result.model_names)
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    wide = (
        (result.credit if credit is None else credit).with_columns(pl.col("model").cast(pl.String), pl.col("channel").cast(pl.String))
        .pivot(on="model", index="channel", values="conversions")
        .sort("channel")
    )
    for row in wide.iter_rows(named=True):
        if any(row[n] for n in names):
            table.add_row(row["channel"], *(f"{row[n]:,.1f}" for n in names))
    return table


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad input, options, an unreachable database) into one line + exit 2."""
    try:
        yield
    except OptiqError as exc:
        _fail(exc)
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "adbc_driver_manager"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(RuntimeError(f"database: {first}"))


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Synthetic users (about 5 touchpoints each).")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate a synthetic data set, run every heuristic model and print credit per channel."""
    from .io import synthetic

    with _one_line_errors():
        t0 = time.perf_counter()
        data = synthetic.generate(n_users=users, seed=seed)
        t_gen = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = _run(data.touchpoints, data.conversions, list(HEURISTIC_MODELS), AttributionConfig())
        t_run = time.perf_counter() - t1
    console.print(_credit_table(result))
    console.print(
        f"{data.touchpoints.height:,} touchpoints, {data.conversions.height:,} conversions, "
        f"{result.links.height:,} links, {result.unattributed.height:,} unattributed"
    )
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    console.print(f"generate {t_gen:.2f}s; attribute {t_run:.2f}s ({stages})")


@app.command()
def attribute(
    touchpoints: Annotated[Path, typer.Option(help="Parquet file or directory of touchpoints.")],
    conversions: Annotated[Path, typer.Option(help="Parquet file or directory of conversions.")],
    out: Annotated[Path, typer.Option(help="Output directory for links/credit/unattributed Parquet files.")],
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model name (repeat); default all heuristic models.")] = None,
    lookback_days: Annotated[float, typer.Option(help="Lookback window in days.")] = 30.0,
    reset_after_conversion: Annotated[bool, typer.Option(help="A touchpoint counts for one conversion only.")] = True,
    quarantine: Annotated[bool, typer.Option(help="Set invalid rows aside instead of failing.")] = False,
    partitions: Annotated[
        int, typer.Option(help="Process users in this many slices (by a hash of anon_id) to bound memory.")
    ] = 1,
    # --- engine spark (optiq_engine.spark.cli) ---
    engine: Annotated[str, typer.Option(help="local (this process) or spark (--partitions: Spark partitions).")] = "local",
    master: Annotated[str | None, typer.Option(help="Spark master URL with --engine spark (default local[*]).")] = None,
) -> None:
    """Attribute conversions to touchpoints from Parquet files (no database needed).

    Writes links.parquet (links/part-*.parquet with --partitions > 1), credit.parquet and
    unattributed.parquet; the previous files stay intact if the run fails. With --engine spark: Parquet
    datasets links/ (by conversion date), unattributed/ and credit/.
    """
    if engine not in ("local", "spark"):
        _fail(ConfigError(f"--engine must be local or spark, got {engine!r}"))
    if engine == "spark":
        from .spark.cli import attribute_command

        with _one_line_errors():
            config = AttributionConfig(
                lookback=timedelta(days=lookback_days),
                reset_after_conversion=reset_after_conversion,
                on_invalid="quarantine" if quarantine else "raise",
            )
            attribute_command(
                touchpoints, conversions, out, models=model or None, config=config,
                partitions=partitions if partitions > 1 else None, master=master,
            )  # fmt: skip
        return
    # --- end engine spark ---
    from .io.parquet import ResultWriter, iter_partitions
    from .models.fitted import data_driven_names
    from .result import combine_credit

    with _one_line_errors():
        config = AttributionConfig(
            lookback=timedelta(days=lookback_days),
            reset_after_conversion=reset_after_conversion,
            on_invalid="quarantine" if quarantine else "raise",
        )
        fitted_together = data_driven_names(model or None, config)
        if fitted_together and partitions > 1:
            raise ConfigError(f"{', '.join(fitted_together)} fit on all users at once: use --partitions 1")
        summaries = []
        with ResultWriter(out, partitioned=partitions > 1) as writer:
            for i, (tp, cv) in enumerate(iter_partitions(touchpoints, conversions, partitions=partitions)):
                if partitions > 1:
                    err.print(f"partition {i + 1}/{partitions}: {tp.height:,} touchpoints, {cv.height:,} conversions")
                result = _run(tp, cv, model or None, config)
                writer.write(result)
                summaries.append(result.without_links())
    console.print(_credit_table(summaries[0], combine_credit([r.credit for r in summaries])))
    counts = writer.counts
    quarantined = counts.get("quarantined_touchpoints", 0) + counts.get("quarantined_conversions", 0)
    console.print(
        f"wrote {counts['links']:,} links, {counts['unattributed']:,} unattributed conversions"
        + (f", {quarantined:,} quarantined rows" if quarantined else "")
        + f" to {out}"
    )


db_app = typer.Typer(no_args_is_help=True, help="Schema migrations of an Optiq Postgres database (Alembic).")
app.add_typer(db_app, name="db")
DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="OPTIQ_DATABASE_URL", help="PostgreSQL URL.")]


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or migrate the Optiq schema (refuses a platform-made database: see ``optiq db stamp``)."""
    from .io import db

    with _one_line_errors():
        db.upgrade(database_url, revision)
    console.print(f"database at revision {db.current(database_url)}")


@db_app.command("downgrade")
def db_downgrade(database_url: DatabaseUrl, revision: Annotated[str, typer.Argument(help="e.g. base or -1")]) -> None:
    """Migrate down to ``revision`` (``base`` drops every Optiq table)."""
    from .io import db

    with _one_line_errors():
        db.downgrade(database_url, revision)
    console.print(f"database at revision {db.current(database_url)}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl) -> None:
    """Print the database's schema revision (``none`` when it has no Alembic version)."""
    from .io import db

    with _one_line_errors():
        revision = db.current(database_url)
    console.print(revision or "none")


@db_app.command("stamp")
def db_stamp(database_url: DatabaseUrl, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Mark an existing (platform-made) Optiq database as at ``revision`` without changing it."""
    from .io import db

    with _one_line_errors():
        db.stamp(database_url, revision)
    console.print(f"database stamped at revision {db.current(database_url)}")


@db_app.command("summarize")
def db_summarize(
    database_url: DatabaseUrl,
    org: Annotated[str, typer.Option("--org", help="Organization id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a concurrent run of the organization.")] = False,
) -> None:
    """Rebuild an organization's daily credit and spend summaries (what the service reads) from its links
    and daily metric rows: for links written by something else than ``optiq run``."""
    from .batch import RunLocked, summarize

    with _one_line_errors():
        try:
            rows, seconds = summarize(database_url, org, wait=wait)
        except RunLocked as exc:
            err.print(f"[bold yellow]locked:[/] {exc}")
            raise typer.Exit(code=3) from None
    console.print(f"summarized {org}: {rows:,} daily credit rows in {seconds:.1f} s")


@app.command()
def run(
    database_url: DatabaseUrl,
    org: Annotated[str, typer.Option("--org", help="Organization id.")],
    site: Annotated[str | None, typer.Option("--site", help="Only this tracking site.")] = None,
    since: Annotated[str | None, typer.Option(help="With --full: recompute conversions from this date (ISO 8601, UTC).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute every user, not only those with new events.")] = False,
    model: Annotated[list[str] | None, typer.Option("--models", "-m", help="Model name (repeat); default: the organization's settings.")] = None,
    lookback_days: Annotated[float | None, typer.Option(help="Override the lookback window (days).")] = None,
    partitions: Annotated[int, typer.Option(help="Load users in this many slices to bound memory.")] = 1,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a concurrent run of the organization.")] = False,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="Set invalid rows aside (counted) instead of failing.")] = False,
    extract: Annotated[bool, typer.Option("--extract-touchpoints", help="Build touchpoints from the tracking events (docs/touchpoints.md) and attribute to them.")] = False,
    engine: Annotated[str, typer.Option(help="local (this process) or spark (load, attribution, journeys on Spark; --partitions: Spark partitions).")] = "local",
    master: Annotated[str | None, typer.Option(help="Spark master URL with --engine spark (default local[*]).")] = None,
) -> None:
    """The nightly job: load the organization's touchpoints and conversions, attribute, write the links.

    Exit codes: 0 done; 2 bad arguments, settings or input; 3 another run of the organization holds the
    lock; 1 anything else (the run is recorded as FAILED in "EngineRun").
    """
    from .batch import RunLocked, run_batch

    options: dict = {} if lookback_days is None else {"lookback": timedelta(days=lookback_days)}
    if quarantine:
        options["on_invalid"] = "quarantine"
    try:
        start = None if since is None else datetime.fromisoformat(since)
    except ValueError:
        _fail(ValueError(f"--since must be an ISO 8601 date or time, got {since!r}"))
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    with _one_line_errors():
        try:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as bar:
                task = bar.add_task("starting", total=None)
                summary = run_batch(
                    database_url, organization_id=org, site_id=site, full=full, since=start, models=model or None,
                    partitions=partitions, wait=wait, on_stage=lambda s: bar.update(task, description=s),
                    extract_touchpoints=extract, engine=engine, master=master, **options,
                )  # fmt: skip
        except RunLocked as exc:
            err.print(f"[bold yellow]locked:[/] {exc}")
            raise typer.Exit(code=3) from None
    table = Table(title=f"optiq run {org} ({summary.mode.lower()})")
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in (
        ("users recomputed", "all" if summary.users is None else f"{summary.users:,}"),
        ("touchpoints extracted (rows changed)" if extract else "touchpoints read",
         f"{summary.touchpoints:,}" + (f" ({summary.touchpoints_changed:,})" if extract else "")),
        ("conversions recomputed", f"{summary.conversions:,}"),
        ("unattributed conversions", f"{summary.unattributed:,}"),
        ("links computed", f"{summary.links:,}"),
        ("links inserted / updated / deleted", f"{summary.inserted:,} / {summary.updated:,} / {summary.deleted:,}"),
        ("journeys (rows changed)", f"{summary.journeys:,} ({summary.journeys_changed:,})"),
        *((f"quarantined {table}", f"{n:,}") for table, n in summary.quarantined.items()),
        *((f"time: {k}", f"{v:.2f} s") for k, v in summary.timings.items()),
    ):
        table.add_row(label, value)
    console.print(table)


from .service.cli import alerts_app, keys_app, serve  # noqa: E402

app.add_typer(alerts_app, name="alerts")
app.add_typer(keys_app, name="keys")
app.command("serve")(serve)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
