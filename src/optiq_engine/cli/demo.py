"""``optiq demo``: a synthetic data set attributed in memory, or (``--database-url``) loaded into a database
and run through the nightly job, as a first look at Optiq Engine."""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer

from .._interrupt import handle_signals
from ..config import AttributionConfig
from .attribute import attribute_with_progress, stage_timings
from .output import compile_seconds, console, credit_table, one_line_errors, stages


def demo(
    users: Annotated[
        int | None,
        typer.Option(
            help="Synthetic users (about 5 touchpoints each); default 200,000, or 20,000 with --database-url.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Seed this Optiq database (after optiq db upgrade) through optiq db load's path and run the nightly job on it, instead of attributing in memory.",
            show_default=False,
        ),
    ] = None,
    org: Annotated[
        str, typer.Option("--org", help="With --database-url: the organization to seed (created if missing).")
    ] = "demo",
    site: Annotated[
        str, typer.Option("--site", help="With --database-url: its tracking site (created if missing).")
    ] = "demo-web",
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
    from ..models import HEURISTIC_MODELS
    from ..simulate import synthetic

    with stages(f"generating {users:,} synthetic users"):
        c0, t0 = compile_seconds(), time.perf_counter()
        data = synthetic.generate(n_users=users, seed=seed)
        t_gen, c_gen = time.perf_counter() - t0, compile_seconds() - c0
    t1 = time.perf_counter()
    result, compiling = attribute_with_progress(
        data.touchpoints, data.conversions, list(HEURISTIC_MODELS), AttributionConfig()
    )
    t_run = time.perf_counter() - t1
    c_run = sum(compiling.values())
    console.print(credit_table(result))
    console.print(
        f"{data.touchpoints.height:,} touchpoints, {data.conversions.height:,} conversions, "
        f"{result.links.height:,} links, {result.unattributed.height:,} unattributed"
    )
    console.print(
        f"generate {t_gen - c_gen:.2f}s; attribute {t_run - c_run:.2f}s ({stage_timings(result.timings, compiling)})",
        soft_wrap=True,
    )
    if c_gen + c_run > 0:
        console.print(
            f"compile {c_gen + c_run:.2f}s (generate {c_gen:.2f}s, attribute {c_run:.2f}s): Numba kernels compiled on "
            "first use in this environment, not included above; later runs load them from the on-disk cache",
            soft_wrap=True,
        )


# --- getting data in (optiq_engine.io.load): optiq db load, optiq demo --database-url ---
def _demo_database(url: str, *, users: int, seed: int, org: str, site: str) -> None:
    """``optiq demo --database-url``: seed an organization with synthetic events, run the nightly job."""
    import polars as pl

    from ..batch import run_batch, summarize
    from ..io.seed import load_synthetic
    from ..simulate import synthetic

    with one_line_errors(), handle_signals():
        with stages(f"generating {users:,} synthetic users"):
            data = synthetic.generate(n_users=users, seed=seed)
        with stages("loading tracking events"):
            loaded = load_synthetic(url, data, organization_id=org, site_id=site, user_id="demo")
        with stages("running the nightly job") as stage:
            summary = run_batch(url, organization_id=org, full=True, extract_touchpoints=True, on_stage=stage)
        with stages("summarizing (the daily credit the HTTP API reads)"):
            summarized, _ = summarize(url, org, wait=True)
    first, last = data.conversions.select(
        pl.col("occurred_at").min().alias("first"), pl.col("occurred_at").max().alias("last")
    ).row(0)
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
