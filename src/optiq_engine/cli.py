"""The ``optiq`` command line (Typer + Rich; output and errors in :mod:`optiq_engine._console`)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ._console import (
    compile_seconds,
    console,
    err,
    fail,
    natural_width,
    new_app,
    new_table,
    one_line_errors,
    set_debug,
    stages,
)
from ._interrupt import handle_signals
from .config import AttributionConfig
from .errors import ConfigError

if TYPE_CHECKING:  # Polars, the models and the pipeline are imported inside the commands: `optiq --help` stays fast
    import polars as pl
    from rich.table import Table

    from .result import AttributionResult

app = new_app("Optiq Engine: marketing attribution.")
_one_line_errors = one_line_errors  # the name the commands below were written with


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="OPTIQ_DEBUG", help="Show the traceback of an error, and the debug log."),
    ] = False,
) -> None:
    """Optiq Engine: marketing attribution."""
    set_debug(debug)
    ctx.call_on_close(lambda: set_debug(False))  # after the command and its error report


_STAGES = {
    "validate": "validating input",
    "encode": "encoding keys and channels",
    "sort": "sorting by user and time",
    "match": "matching lookback windows",
    "weights": "computing weights and value",
    "frames": "building result frames",
}


def _run(
    touchpoints, conversions, models: list[str] | None, config: AttributionConfig, by: str | None = None
) -> tuple[AttributionResult, dict[str, float]]:
    """Attribute with a progress display; also return the seconds spent compiling Numba kernels, by stage
    (``"starting"`` before the first), so the caller can report compilation apart from run time. ``by``:
    credit per conversion type (docs/attribution.md, "Conversion types"; stages named ``"<type>: <stage>"``)."""
    from .conversion_types import attribute_by_name
    from .pipeline import run_attribution

    compiling: dict[str, float] = {}
    current, mark = ["starting"], [compile_seconds()]

    def account(stage: str | None) -> None:
        now = compile_seconds()
        if now > mark[0]:
            compiling[current[0]] = compiling.get(current[0], 0.0) + now - mark[0]
        if stage is not None:
            current[0], mark[0] = stage, now

    with stages("attributing") as show:

        def on_stage(stage: str) -> None:
            kind, _, step = stage.rpartition(": ")
            account(step)
            show(f"{kind}: {_STAGES.get(step, step)}" if kind else _STAGES.get(step, step))

        if by is not None:
            result = attribute_by_name(touchpoints, conversions, models=models, config=config, on_stage=on_stage)
        else:
            result = run_attribution(touchpoints, conversions, models=models, config=config, on_stage=on_stage)
    account(None)
    return result, compiling


def _timings(timings: dict[str, float], compiling: dict[str, float]) -> str:
    """``stage 0.12s, ...``: each stage's seconds without the Numba compilation it triggered."""
    return ", ".join(f"{k} {max(v - compiling.get(k, 0.0), 0.0):.2f}s" for k, v in timings.items())


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


def _credit_table(result: AttributionResult, credit: pl.DataFrame | None = None) -> Table:
    """Attributed conversions, one row per channel and one column per model (channels never cut: the
    model headers break at their underscores when the table is wider than the terminal)."""
    import polars as pl

    names = list(result.model_names)
    credit = result.credit if credit is None else credit
    by = ["conversion_name"] if "conversion_name" in credit.columns else []  # by="name": a row per type and channel
    wide = (
        credit.with_columns(pl.col("model", "channel", *by).cast(pl.String))
        .pivot(on="model", index=[*by, "channel"], values="conversions")
        .sort(*by, "channel", nulls_last=True)
    )  # fmt: skip
    rows = [
        [*((row["conversion_name"] or "(no name)",) if by else ()), row["channel"],
         *(f"{row[n]:,.1f}" if row[n] is not None else "" for n in names)]
        for row in wide.iter_rows(named=True)
        if any(row[n] for n in names)
    ]  # fmt: skip

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


def _print_compile_time(seconds: float) -> None:
    """Say how long compiling Numba kernels took, if this command compiled any (a fresh environment)."""
    if seconds > 0:
        err.print(
            f"compiling Numba kernels took {seconds:.2f}s (first use in this environment; "
            "later runs load them from the on-disk cache; optiq warmup compiles them ahead of time)",
            soft_wrap=True,
        )


def _fail(error: Exception | str) -> NoReturn:
    """``error: <message>`` and exit code 2 (kept for the commands written before optiq_engine._console)."""
    fail(str(error))


@app.command()
def demo(
    users: Annotated[int | None, typer.Option(help="Synthetic users (about 5 touchpoints each); default 200,000, or 20,000 with --database-url.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    database_url: Annotated[str | None, typer.Option("--database-url", help="Seed this Optiq database (after optiq db upgrade) through optiq db load's path and run the nightly job on it, instead of attributing in memory.", show_default=False)] = None,
    org: Annotated[str, typer.Option("--org", help="With --database-url: the organization to seed (created if missing).")] = "demo",
    site: Annotated[str, typer.Option("--site", help="With --database-url: its tracking site (created if missing).")] = "demo-web",
) -> None:
    """Generate a synthetic data set, run every heuristic model and print credit per channel.

    With --database-url: load the data set as tracking events of an organization (and a user "demo" who
    owns it), run the nightly job (touchpoints extracted from the events), summarize it for the HTTP API
    and print the next commands.
    """
    if database_url is not None:
        _demo_database(database_url, users=users or 20_000, seed=seed, org=org, site=site)
        return
    users = users or 200_000
    from .models import HEURISTIC_MODELS
    from .simulate import synthetic

    with stages(f"generating {users:,} synthetic users"):
        c0, t0 = compile_seconds(), time.perf_counter()
        data = synthetic.generate(n_users=users, seed=seed)
        t_gen, c_gen = time.perf_counter() - t0, compile_seconds() - c0
    t1 = time.perf_counter()
    result, compiling = _run(data.touchpoints, data.conversions, list(HEURISTIC_MODELS), AttributionConfig())
    t_run = time.perf_counter() - t1
    c_run = sum(compiling.values())
    console.print(_credit_table(result))
    console.print(
        f"{data.touchpoints.height:,} touchpoints, {data.conversions.height:,} conversions, "
        f"{result.links.height:,} links, {result.unattributed.height:,} unattributed"
    )
    console.print(
        f"generate {t_gen - c_gen:.2f}s; attribute {t_run - c_run:.2f}s ({_timings(result.timings, compiling)})",
        soft_wrap=True,
    )
    if c_gen + c_run > 0:
        console.print(
            f"compile {c_gen + c_run:.2f}s (generate {c_gen:.2f}s, attribute {c_run:.2f}s): Numba kernels compiled on "
            "first use in this environment, not included above; later runs load them from the on-disk cache",
            soft_wrap=True,
        )


@app.command()
def warmup(
    data_driven: Annotated[bool, typer.Option("--data-driven", help="Also compile the data-driven fits (MARKOV orders 1 and 2, SHAPLEY, DATA_DRIVEN).")] = False,
) -> None:
    """Compile the Numba kernels of the common paths into the on-disk cache, and print each stage's seconds.

    Runs heuristic attribution (with and without path rules), journeys and touchpoint extraction on tiny
    inputs, so that a first real run in this environment compiles nothing: run it once when building a
    Docker image, a CI cache or a Spark worker's environment (NUMBA_CACHE_DIR moves the cache; the same
    CPU model reuses it). A second warmup is quick: everything loads from the cache.
    """
    from .kernels._jit import _CACHE
    from .warmup import warm_up

    t0 = time.perf_counter()
    with stages("warming up") as show:
        done = warm_up(data_driven=data_driven, on_stage=show)
    table = new_table("optiq warmup: Numba kernels", "stage", "seconds", "of which compiling", "functions compiled",
                      numbers=["seconds", "of which compiling", "functions compiled"])  # fmt: skip
    for stage in done:
        table.add_row(stage.name, f"{stage.seconds:.2f}", f"{stage.compile_seconds:.2f}", f"{stage.functions:,}")
    console.print(table)
    compiled = sum(s.compile_seconds for s in done)
    console.print(
        f"warmup {time.perf_counter() - t0:.2f}s, of which compiling {compiled:.2f}s "
        f"({sum(s.functions for s in done):,} functions; 0: the cache was already warm)",
        soft_wrap=True,
    )
    if not _CACHE:
        err.print("warning: OPTIQ_NUMBA_CACHE=0: the on-disk cache is off, so nothing was kept for later processes")


#: The heuristic models' path rules (AttributionConfig.touch_rule, drop_direct, max_touchpoints).
TouchRuleFlag = Annotated[
    str, typer.Option(help="Touches credited by the heuristic models: all, collapse_repeats or first_per_channel (docs/attribution.md, Path rules).")
]  # fmt: skip
DropDirectFlag = Annotated[
    str, typer.Option(help="Direct touches left out: never, unless_all_direct or trailing_unless_all_direct.")
]
MaxTouchpointsFlag = Annotated[
    int | None, typer.Option(help="Credit only the latest N touches of each conversion (default: all).", show_default=False)
]  # fmt: skip


@app.command()
def attribute(
    touchpoints: Annotated[Path, typer.Option(help="Parquet or CSV file (by extension), or a directory of either, of touchpoints.")],
    conversions: Annotated[Path, typer.Option(help="Parquet or CSV file (by extension), or a directory of either, of conversions.")],
    out: Annotated[Path, typer.Option(help="Output directory for links/credit/unattributed Parquet files.")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="NAME", help="Model name (repeat); default all heuristic models."),
    ] = None,
    lookback_days: Annotated[float, typer.Option(help="Lookback window in days.")] = 30.0,
    reset_after_conversion: Annotated[bool, typer.Option(help="A touchpoint counts for one conversion only.")] = True,
    quarantine: Annotated[bool, typer.Option(help="Set invalid rows aside instead of failing.")] = False,
    value_column: Annotated[str | None, typer.Option(help="The conversions' money column (default value_micros).")] = None,
    value_unit: Annotated[
        str, typer.Option(help="micros (integers) or currency (e.g. 49.99, converted exactly to micros).")
    ] = "micros",
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone of times without an offset (default: UTC, with a warning).")
    ] = None,
    timestamp_format: Annotated[
        str | None, typer.Option(help="strftime format of times not in ISO 8601, e.g. '%m/%d/%Y %H:%M'.")
    ] = None,
    partitions: Annotated[
        int, typer.Option(help="Process users in this many slices (by a hash of anon_id) to bound memory.")
    ] = 1,
    touch_rule: TouchRuleFlag = "all",
    drop_direct: DropDirectFlag = "never",
    max_touchpoints: MaxTouchpointsFlag = None,
    by: Annotated[
        str | None, typer.Option(help="name: attribute each conversion type (the conversions' name column) on its own (docs/attribution.md, Conversion types).", show_default=False)
    ] = None,  # fmt: skip
    identity: Annotated[
        str, typer.Option(help="anon_id (each cookie) or stitched (anon ids joined by the user_id column; docs/contract.md §1.5).")
    ] = "anon_id",
    # --- engine spark (optiq_engine.spark.cli) ---
    engine: Annotated[str, typer.Option(help="local (this process) or spark (--partitions: Spark partitions).")] = "local",
    master: Annotated[str | None, typer.Option(help="Spark master URL with --engine spark (default local[*]).")] = None,
) -> None:
    """Attribute conversions to touchpoints from Parquet or CSV files (no database needed).

    Writes links.parquet (links/part-*.parquet with --partitions > 1), credit.parquet and
    unattributed.parquet; the previous files stay intact if the run fails or is stopped (SIGINT or
    SIGTERM: exit 130 or 143, no staging left). With --engine spark: Parquet datasets links/ (by
    conversion date), unattributed/ and credit/.
    """
    if engine not in ("local", "spark"):
        _fail(ConfigError(f"--engine must be local or spark, got {engine!r}"))
    if by is not None and (engine == "spark" or partitions > 1):
        _fail(ConfigError("--by name runs with --engine local and --partitions 1 (credit per conversion type)"))
    if engine == "spark":
        from .spark.cli import attribute_command

        with _one_line_errors():
            config = AttributionConfig(
                lookback=timedelta(days=lookback_days),
                reset_after_conversion=reset_after_conversion,
                on_invalid="quarantine" if quarantine else "raise",
                value_column=value_column,
                value_unit=value_unit,  # type: ignore[arg-type]
                timezone=timezone,
                timestamp_format=timestamp_format,
                touch_rule=touch_rule,  # type: ignore[arg-type]
                drop_direct=drop_direct,  # type: ignore[arg-type]
                max_touchpoints=max_touchpoints,
                identity=identity,  # type: ignore[arg-type]
            )
            attribute_command(
                touchpoints, conversions, out, models=model or None, config=config,
                partitions=partitions if partitions > 1 else None, master=master,
            )  # fmt: skip
        return
    # --- end engine spark ---
    with _one_line_errors(), handle_signals():  # SIGINT/SIGTERM: stop at a safe point, exit 130/143
        import polars as pl

        from .conversion_types import check_by
        from .io.parquet import ResultWriter, iter_partitions  # a signal while importing is deferred too
        from .models.fitted import data_driven_names
        from .result import combine_credit

        check_by(by)
        compiled = compile_seconds()
        config = AttributionConfig(
            lookback=timedelta(days=lookback_days),
            reset_after_conversion=reset_after_conversion,
            on_invalid="quarantine" if quarantine else "raise",
            value_column=value_column,
            value_unit=value_unit,  # type: ignore[arg-type]
            timezone=timezone,
            timestamp_format=timestamp_format,
            touch_rule=touch_rule,  # type: ignore[arg-type]
            drop_direct=drop_direct,  # type: ignore[arg-type]
            max_touchpoints=max_touchpoints,
            identity=identity,  # type: ignore[arg-type]
        )
        if identity == "stitched" and partitions > 1:
            raise ConfigError("--identity stitched joins anon ids of any slice into one person: use --partitions 1")
        fitted_together = data_driven_names(model or None, config)
        if fitted_together and partitions > 1:
            raise ConfigError(f"{', '.join(fitted_together)} fit on all users at once: use --partitions 1")
        summaries = []
        with ResultWriter(out, partitioned=partitions > 1) as writer:
            for i, (tp, cv) in enumerate(iter_partitions(touchpoints, conversions, partitions=partitions)):
                if partitions > 1:
                    err.print(f"partition {i + 1}/{partitions}: {tp.height:,} touchpoints, {cv.height:,} conversions")
                result, _ = _run(tp, cv, model or None, config, by)
                writer.write(result)
                summaries.append(result.without_links())
    console.print(_credit_table(summaries[0], combine_credit([r.credit for r in summaries])))
    counts = writer.counts
    quarantined = counts.get("quarantined_touchpoints", 0) + counts.get("quarantined_conversions", 0)
    left = pl.concat([r.unattributed.select("model") for r in summaries])
    baseline = left.drop_nulls("model").group_by("model", maintain_order=True).len().iter_rows()
    console.print(
        f"wrote {counts['links']:,} links, {left.get_column('model').null_count():,} unattributed conversions"
        + "".join(f", {n:,} baseline conversions of {name} (unattributed for it)" for name, n in baseline)
        + (f", {quarantined:,} quarantined rows" if quarantined else "")
        + f" to {out}",
        soft_wrap=True,
    )
    if summaries[0].identity is not None:
        console.print(summaries[0].identity.message(), soft_wrap=True)
    _print_compile_time(compile_seconds() - compiled)


db_app = new_app("An Optiq Postgres database: schema migrations (Alembic), loading tracking events, summaries.")
app.add_typer(db_app, name="db")
DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="OPTIQ_DATABASE_URL", help="PostgreSQL URL.")]


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or migrate the Optiq schema (refuses a platform-made database: see optiq db stamp)."""
    from .io import db

    with _one_line_errors():
        db.upgrade(database_url, revision)
    console.print(f"database at revision {db.current(database_url)}")


@db_app.command("downgrade")
def db_downgrade(
    database_url: DatabaseUrl,
    revision: Annotated[str, typer.Argument(help="e.g. base or -1")],
    force: Annotated[bool, typer.Option("--force", help="Drop tables and columns even if they hold rows.")] = False,
) -> None:
    """Migrate down to REVISION (base drops every Optiq table).

    Refuses (exit 2, nothing changed) when it would drop tables or columns holding rows, or the
    platform's own tables of a database the platform made, and says which with their row counts;
    --force drops them.
    """
    from .io import db

    with _one_line_errors():
        dropped = db.downgrade(database_url, revision, force=force)
    if dropped:
        err.print(f"dropped {', '.join(f'{name} ({rows:,} rows)' for name, rows in dropped.items())}", soft_wrap=True, markup=False)
    console.print(f"database at revision {db.current(database_url)}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl) -> None:
    """Print the database's schema revision (none when it has no Alembic version)."""
    from .io import db

    with _one_line_errors():
        revision = db.current(database_url)
    console.print(revision or "none")


@db_app.command("stamp")
def db_stamp(database_url: DatabaseUrl, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Mark an existing (platform-made) Optiq database as at REVISION without changing it."""
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
    """Rebuild an organization's daily credit and spend summaries.

    The summaries (what the service reads) are rebuilt from the organization's links and daily metric
    rows: for links written by something else than optiq run.
    """
    from .batch import RunLocked, summarize

    with _one_line_errors():
        try:
            rows, seconds = summarize(database_url, org, wait=wait)
        except RunLocked as exc:
            err.print(f"[bold yellow]locked:[/] {exc}", soft_wrap=True)
            raise typer.Exit(code=3) from None
    console.print(f"summarized {org}: {rows:,} daily credit rows in {seconds:.1f} s")


# --- getting data in (optiq_engine.io.load): optiq db load, optiq demo --database-url ---
@db_app.command("load")
def db_load(
    paths: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Parquet or CSV files of tracking events, or folders of them.", show_default=False)],
    database_url: DatabaseUrl,
    org: Annotated[str, typer.Option("--org", help="Organization id.")],
    site: Annotated[str, typer.Option("--site", help="Tracking site id (a site of the organization).")],
    create: Annotated[bool, typer.Option("--create", help="Create the organization and the site if missing.")] = False,
    domain: Annotated[str | None, typer.Option(help="With --create: the new site's domain (default: the site id).", show_default=False)] = None,
    quarantine: Annotated[Path | None, typer.Option("--quarantine", metavar="FILE", help="Load the valid rows and write the invalid ones to FILE (.csv or .parquet) with a reason column.", show_default=False)] = None,
    timezone: Annotated[str | None, typer.Option(help="Time zone of timestamps written without one, e.g. Europe/Paris (default: UTC, with a warning).", show_default=False)] = None,
) -> None:
    """Load tracking events into "TrackingEvent" of one organization's site.

    Columns (docs/contract.md §1): event_id, anon_id, occurred_at, type (PAGE_VIEW, CONVERSION or CUSTOM);
    optional session_id, name, url, referrer, utm_source ... utm_content, gclid, fbclid, ttclid,
    value_micros (integer micros), properties (JSON). Idempotent: events already stored (same site and
    event_id) are left as they are and counted. Invalid rows fail the load (nothing is written) unless
    --quarantine names a file for them.
    """
    import polars as pl

    from .errors import InputError, SourceError
    from .io.load import load_events
    from .io.parquet import read_source

    with one_line_errors():
        frames = [read_source(path) for path in paths]
        try:
            events = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"the files' columns do not fit together ({str(exc).splitlines()[0]}): load them one by one") from exc
        options = {} if timezone is None else {"timezone": timezone}
        try:
            summary = load_events(
                events, database_url, organization_id=org, site_id=site, create=create, domain=domain,
                on_invalid="raise" if quarantine is None else "quarantine", **options,
            )  # fmt: skip
        except InputError as exc:
            if not exc.counts:
                raise
            counts = ", ".join(f"{k}: {v:,}" for k, v in exc.counts.items())
            fail(f"{sum(exc.counts.values()):,} invalid event row(s) ({counts}); nothing was loaded. Fix them, or "
                 "pass --quarantine bad.csv to load the others and write these there with a reason column")  # fmt: skip
        if quarantine is not None:
            _write_rows(summary.quarantined_rows, quarantine)
    names = ", ".join(str(p) for p in paths)
    console.print(
        f"loaded {names} into organization {org}, site {site}: {summary.rows:,} rows, {summary.inserted:,} inserted, "
        f"{summary.already_present:,} already present, {summary.quarantined:,} quarantined"
        + ("" if not summary.quarantined else f" ({', '.join(f'{k}: {v:,}' for k, v in summary.reasons.items())}) to {quarantine}"),
        soft_wrap=True,
    )  # fmt: skip
    created = [f"organization {org}"] * summary.created_organization + [f"tracking site {site}"] * summary.created_site
    if created:
        console.print(f"created {' and '.join(created)}", soft_wrap=True)
    if summary.ignored_columns:
        err.print(f"note: ignored columns (not event columns): {', '.join(summary.ignored_columns)}", soft_wrap=True)
    console.print(f"next: optiq run --org {org} --full", soft_wrap=True)


def _write_rows(rows: pl.DataFrame, path: Path) -> None:
    """Rows to ``path``: CSV for ``*.csv`` (nested columns as JSON text), else Parquet."""
    import polars as pl

    from .errors import SinkError

    try:
        if path.suffix.lower() == ".csv":
            nested = [c for c, t in rows.schema.items() if isinstance(t, (pl.Struct, pl.List, pl.Array))]
            rows.with_columns(pl.col(c).struct.json_encode() if isinstance(rows.schema[c], pl.Struct) else pl.col(c).cast(pl.String) for c in nested).write_csv(path)
        else:
            rows.write_parquet(path)
    except OSError as exc:
        raise SinkError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc


def _demo_database(url: str, *, users: int, seed: int, org: str, site: str) -> None:
    """``optiq demo --database-url``: seed an organization with synthetic events, run the nightly job."""
    import polars as pl

    from .batch import run_batch, summarize
    from .io.seed import load_synthetic
    from .simulate import synthetic

    with one_line_errors(), handle_signals():
        with stages(f"generating {users:,} synthetic users"):
            data = synthetic.generate(n_users=users, seed=seed)
        with stages("loading tracking events"):
            loaded = load_synthetic(url, data, organization_id=org, site_id=site, user_id="demo")
        with stages("running the nightly job") as stage:
            summary = run_batch(url, organization_id=org, full=True, extract_touchpoints=True, on_stage=stage)
        with stages("summarizing (the daily credit the HTTP API reads)"):
            summarized, _ = summarize(url, org, wait=True)
    first, last = data.conversions.select(pl.col("occurred_at").min().alias("first"), pl.col("occurred_at").max().alias("last")).row(0)
    console.print(
        f"loaded {loaded.rows:,} tracking events into organization {org}, site {site} ({loaded.inserted:,} new, "
        f"{loaded.already_present:,} already present); user demo owns the organization",
        soft_wrap=True,
    )
    console.print(
        f"optiq run --full: {summary.touchpoints:,} touchpoints extracted, {summary.conversions:,} conversions, "
        f"{summary.links:,} links ({summary.inserted:,} inserted), {summary.unattributed:,} unattributed, "
        f"{summary.journeys:,} journeys in {summary.timings.get('total', 0.0):.1f} s; "
        f"optiq db summarize: {summarized:,} daily credit rows (later runs keep them)",
        soft_wrap=True,
    )
    url_option = "" if os.environ.get("OPTIQ_DATABASE_URL") == url else f" --database-url {url}"
    console.print("next:", soft_wrap=True)
    for line in (
        f"optiq run{url_option} --org {org}            # incremental: only users with new events",
        f"optiq keys create{url_option} --org {org} --user demo   # prints an API key",
        f"optiq serve{url_option}                      # the HTTP API on http://127.0.0.1:8000",
        f'curl -H "Authorization: Bearer $KEY" "http://127.0.0.1:8000/v1/metrics?start={first:%Y-%m-%d}&end={last:%Y-%m-%d}&grain=channel"',
    ):
        console.print(f"  {line}", soft_wrap=True, highlight=False)


@app.command()
def run(
    database_url: DatabaseUrl,
    org: Annotated[str, typer.Option("--org", help="Organization id.")],
    site: Annotated[str | None, typer.Option("--site", help="Only this tracking site.")] = None,
    since: Annotated[str | None, typer.Option(help="With --full: recompute conversions from this date (ISO 8601, UTC).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute every user, not only those with new events.")] = False,
    model: Annotated[list[str] | None, typer.Option("--models", "-m", help="Model name (repeat); default: the organization's settings.")] = None,
    lookback_days: Annotated[float | None, typer.Option(help="Override the lookback window (days).")] = None,
    touch_rule: Annotated[str | None, typer.Option(help="Override the settings' touchRule (docs/attribution.md, Path rules).", show_default=False)] = None,
    drop_direct: Annotated[str | None, typer.Option(help="Override the settings' dropDirect.", show_default=False)] = None,
    max_touchpoints: Annotated[int | None, typer.Option(help="Override the settings' maxTouchpoints.", show_default=False)] = None,
    by: Annotated[str | None, typer.Option(help="name: attribute each conversion type on its own (overrides the settings' by; docs/attribution.md, Conversion types).", show_default=False)] = None,
    partitions: Annotated[int, typer.Option(help="Load users in this many slices to bound memory.")] = 1,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a concurrent run of the organization.")] = False,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="Set invalid rows aside (counted) instead of failing.")] = False,
    extract: Annotated[bool | None, typer.Option("--extract-touchpoints/--no-extract-touchpoints", help="Build touchpoints from the tracking events (docs/touchpoints.md) and attribute to them, or read the TouchPoint rows only. Default: extract when the organization has events and no TouchPoint rows, or its last run extracted (docs/touchpoints.md §6).", show_default=False)] = None,
    engine: Annotated[str, typer.Option(help="local (this process) or spark (load, attribution, journeys on Spark; --partitions: Spark partitions).")] = "local",
    master: Annotated[str | None, typer.Option(help="Spark master URL with --engine spark (default local[*]).")] = None,
) -> None:
    """The nightly job: load the organization's touchpoints and conversions, attribute, write the links.

    Exit codes: 0 done; 2 bad arguments, settings or input; 3 another run of the organization holds the
    lock; 130 / 143 stopped by SIGINT / SIGTERM (at a safe point: nothing half-written, the run recorded
    FAILED); 1 anything else (the run is recorded as FAILED in "EngineRun"). Runs left RUNNING by a
    process that is gone are marked ABANDONED by the next run (of any organization).
    """
    options: dict = {} if lookback_days is None else {"lookback": timedelta(days=lookback_days)}
    rules = {"touch_rule": touch_rule, "drop_direct": drop_direct, "max_touchpoints": max_touchpoints}
    options |= {name: value for name, value in rules.items() if value is not None}
    if quarantine:
        options["on_invalid"] = "quarantine"
    try:
        start = None if since is None else datetime.fromisoformat(since)
    except ValueError:
        _fail(ValueError(f"--since must be an ISO 8601 date or time, got {since!r}"))
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    with _one_line_errors(), handle_signals():  # SIGINT/SIGTERM: the run is recorded FAILED, exit 130/143
        compiled = compile_seconds()
        from .batch import RunLocked, run_batch  # a signal while importing is deferred too

        try:
            with stages("starting") as show:
                summary = run_batch(
                    database_url, organization_id=org, site_id=site, full=full, since=start, models=model or None,
                    partitions=partitions, wait=wait, on_stage=show,
                    extract_touchpoints=extract, engine=engine, master=master, by=by, **options,
                )  # fmt: skip
        except RunLocked as exc:
            err.print(f"[bold yellow]locked:[/] {exc}", soft_wrap=True)
            raise typer.Exit(code=3) from None
    compiled = compile_seconds() - compiled
    table = new_table(f"optiq run {org} ({summary.mode.lower()})", "what", "value", numbers=["value"])
    for label, value in (
        ("users recomputed", "all" if summary.users is None else f"{summary.users:,}"),
        ("touchpoints extracted (rows changed)" if summary.touchpoints_extracted else "touchpoints read",
         f"{summary.touchpoints:,}" + (f" ({summary.touchpoints_changed:,})" if summary.touchpoints_extracted else "")),
        ("conversions recomputed", f"{summary.conversions:,}"),
        *((f"  of type {name}", f"{n:,}") for name, n in summary.conversion_types.items()),
        ("unattributed conversions", f"{summary.unattributed:,}"),
        *(
            (f"baseline conversions of {name} (unattributed for it)", f"{n:,}")
            for name, n in summary.baseline_conversions.items()
        ),
        ("links computed", f"{summary.links:,}"),
        ("links inserted / updated / deleted", f"{summary.inserted:,} / {summary.updated:,} / {summary.deleted:,}"),
        ("journeys (rows changed)", f"{summary.journeys:,} ({summary.journeys_changed:,})"),
        *((f"quarantined {table}", f"{n:,}") for table, n in summary.quarantined.items()),
        *((f"time: {k}", f"{v:.2f} s") for k, v in summary.timings.items()),
        *([("time: of which compiling Numba kernels (first use)", f"{compiled:.2f} s")] if compiled > 0 else []),
    ):
        table.add_row(label, value)
    console.print(table)
    # --- getting data in: say why a run found nothing, and when touchpoints were extracted by default ---
    if summary.touchpoints_extracted and extract is None:
        err.print("note: touchpoints were extracted from the tracking events (no TouchPoint rows of the platform, "
                  "or the last run extracted them: docs/touchpoints.md §6); --no-extract-touchpoints reads TouchPoint rows only")  # fmt: skip
    if summary.mode == "FULL" and summary.conversions == 0:
        err.print(f"note: no conversions in scope: load tracking events with `optiq db load FILE --org {org} --site SITE`")
    elif not summary.touchpoints_extracted and summary.touchpoints == 0 and summary.conversions:
        err.print("note: no TouchPoint rows in scope, so every conversion is unattributed: "
                  "pass --extract-touchpoints to build them from the tracking events")  # fmt: skip


from .service.cli import alerts_app, keys_app, serve  # noqa: E402

app.add_typer(alerts_app, name="alerts")
app.add_typer(keys_app, name="keys")
app.command("serve")(serve)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
