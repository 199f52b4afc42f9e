"""``optiq run``: the nightly job of one organization, on its database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from .._interrupt import handle_signals
from .db import DatabaseUrl
from .output import compile_seconds, console, err, fail, locked, new_table, one_line_errors, stages

if TYPE_CHECKING:
    from ..batch import RunSummary


def run(
    database_url: DatabaseUrl,
    org: Annotated[str, typer.Option("--org", help="Organization id.")],
    site: Annotated[str | None, typer.Option("--site", help="Only this tracking site.")] = None,
    since: Annotated[
        str | None, typer.Option(help="With --full: recompute conversions from this date (ISO 8601, UTC).")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute every user, not only those with new events.")] = False,
    model: Annotated[
        list[str] | None,
        typer.Option("--models", "-m", help="Model name (repeat); default: the organization's settings."),
    ] = None,
    lookback_days: Annotated[float | None, typer.Option(help="Override the lookback window (days).")] = None,
    touch_rule: Annotated[
        str | None,
        typer.Option(help="Override the settings' touchRule (docs/attribution.md, Path rules).", show_default=False),
    ] = None,
    drop_direct: Annotated[
        str | None, typer.Option(help="Override the settings' dropDirect.", show_default=False)
    ] = None,
    max_touchpoints: Annotated[
        int | None, typer.Option(help="Override the settings' maxTouchpoints.", show_default=False)
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="name: attribute each conversion type on its own (overrides the settings' by; docs/attribution.md, Conversion types).",
            show_default=False,
        ),
    ] = None,
    partitions: Annotated[int, typer.Option(help="Load users in this many slices to bound memory.")] = 1,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a concurrent run of the organization.")] = False,
    quarantine: Annotated[
        bool, typer.Option("--quarantine", help="Set invalid rows aside (counted) instead of failing.")
    ] = False,
    extract: Annotated[
        bool | None,
        typer.Option(
            "--extract-touchpoints/--no-extract-touchpoints",
            help="Build touchpoints from the tracking events (docs/touchpoints.md) and attribute to them, or read the TouchPoint rows only. Default: extract when the organization has events and no TouchPoint rows, or its last run extracted (docs/touchpoints.md §6).",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process) or spark (load, attribution, journeys on Spark; --partitions: Spark partitions)."
        ),
    ] = "local",
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
        fail(f"--since must be an ISO 8601 date or time, got {since!r}")
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    with one_line_errors(), handle_signals():  # SIGINT/SIGTERM: the run is recorded FAILED, exit 130/143
        compiled = compile_seconds()
        from ..batch import Compute, RunLocked, run_batch  # a signal while importing is deferred too

        compute: Compute | None = None  # the default: compute_local
        if engine == "spark":
            from ..spark.job import compute_on_spark

            compute = compute_on_spark
        try:
            with stages("starting") as show:
                summary = run_batch(
                    database_url,
                    organization_id=org,
                    site_id=site,
                    full=full,
                    since=start,
                    models=model or None,
                    partitions=partitions,
                    wait=wait,
                    on_stage=show,
                    extract_touchpoints=extract,
                    engine=engine,
                    master=master,
                    by=by,
                    compute=compute,
                    **options,
                )
        except RunLocked as exc:
            locked(exc)
    _report(summary, org=org, extract=extract, compiled=compile_seconds() - compiled)


def _report(summary: RunSummary, *, org: str, extract: bool | None, compiled: float) -> None:
    """The run's table of counts and times, then a note on how touchpoints were found or why nothing was."""
    table = new_table(f"optiq run {org} ({summary.mode.lower()})", "what", "value", numbers=["value"])
    for label, value in (
        ("users recomputed", "all" if summary.users is None else f"{summary.users:,}"),
        (
            "touchpoints extracted (rows changed)" if summary.touchpoints_extracted else "touchpoints read",
            f"{summary.touchpoints:,}"
            + (f" ({summary.touchpoints_changed:,})" if summary.touchpoints_extracted else ""),
        ),
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
        err.print(
            "note: touchpoints were extracted from the tracking events (no TouchPoint rows of the platform, "
            "or the last run extracted them: docs/touchpoints.md §6); --no-extract-touchpoints reads TouchPoint rows only"
        )
    if summary.mode == "FULL" and summary.conversions == 0:
        err.print(
            f"note: no conversions in scope: load tracking events with `optiq db load FILE --org {org} --site SITE`"
        )
    elif not summary.touchpoints_extracted and summary.touchpoints == 0 and summary.conversions:
        err.print(
            "note: no TouchPoint rows in scope, so every conversion is unattributed: "
            "pass --extract-touchpoints to build them from the tracking events"
        )
