"""``optiq db ...``: an Optiq Postgres database: its schema (Alembic migrations), loading tracking events
into it, and rebuilding an organization's summaries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .output import console, err, fail, locked, new_app, one_line_errors

if TYPE_CHECKING:
    import polars as pl

db_app = new_app("An Optiq Postgres database: schema migrations (Alembic), loading tracking events, summaries.")
DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="OPTIQ_DATABASE_URL", help="PostgreSQL URL.")]


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or migrate the Optiq schema (refuses a platform-made database: see optiq db stamp)."""
    from ..io import db

    with one_line_errors():
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
    from ..io import db

    with one_line_errors():
        dropped = db.downgrade(database_url, revision, force=force)
    if dropped:
        err.print(
            f"dropped {', '.join(f'{name} ({rows:,} rows)' for name, rows in dropped.items())}",
            soft_wrap=True,
            markup=False,
        )
    console.print(f"database at revision {db.current(database_url)}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl) -> None:
    """Print the database's schema revision (none when it has no Alembic version)."""
    from ..io import db

    with one_line_errors():
        revision = db.current(database_url)
    console.print(revision or "none")


@db_app.command("stamp")
def db_stamp(database_url: DatabaseUrl, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Mark an existing (platform-made) Optiq database as at REVISION without changing it."""
    from ..io import db

    with one_line_errors():
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
    from ..batch import RunLocked, summarize

    with one_line_errors():
        try:
            rows, seconds = summarize(database_url, org, wait=wait)
        except RunLocked as exc:
            locked(exc)
    console.print(f"summarized {org}: {rows:,} daily credit rows in {seconds:.1f} s")


# --- getting data in (optiq_engine.io.load): optiq db load, optiq demo --database-url ---
@db_app.command("load")
def db_load(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...", help="Parquet or CSV files of tracking events, or folders of them.", show_default=False
        ),
    ],
    database_url: DatabaseUrl,
    org: Annotated[str, typer.Option("--org", help="Organization id.")],
    site: Annotated[str, typer.Option("--site", help="Tracking site id (a site of the organization).")],
    create: Annotated[bool, typer.Option("--create", help="Create the organization and the site if missing.")] = False,
    domain: Annotated[
        str | None,
        typer.Option(help="With --create: the new site's domain (default: the site id).", show_default=False),
    ] = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine",
            metavar="FILE",
            help="Load the valid rows and write the invalid ones to FILE (.csv or .parquet) with a reason column.",
            show_default=False,
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            help="Time zone of timestamps written without one, e.g. Europe/Paris (default: UTC, with a warning).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Load tracking events into "TrackingEvent" of one organization's site.

    Columns (docs/contract.md §1): event_id, anon_id, occurred_at, type (PAGE_VIEW, CONVERSION or CUSTOM);
    optional session_id, name, url, referrer, utm_source ... utm_content, gclid, fbclid, ttclid,
    value_micros (integer micros), properties (JSON). Idempotent: events already stored (same site and
    event_id) are left as they are and counted. Invalid rows fail the load (nothing is written) unless
    --quarantine names a file for them.
    """
    import polars as pl

    from ..errors import InputError, SourceError
    from ..io.load import load_events
    from ..io.parquet import read_source

    with one_line_errors():
        frames = [read_source(path) for path in paths]
        try:
            events = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        except pl.exceptions.PolarsError as exc:
            raise SourceError(
                f"the files' columns do not fit together ({str(exc).splitlines()[0]}): load them one by one"
            ) from exc
        options = {} if timezone is None else {"timezone": timezone}
        try:
            summary = load_events(
                events,
                database_url,
                organization_id=org,
                site_id=site,
                create=create,
                domain=domain,
                on_invalid="raise" if quarantine is None else "quarantine",
                **options,
            )
        except InputError as exc:
            if not exc.counts:
                raise
            counts = ", ".join(f"{k}: {v:,}" for k, v in exc.counts.items())
            fail(
                f"{sum(exc.counts.values()):,} invalid event row(s) ({counts}); nothing was loaded. Fix them, or "
                "pass --quarantine bad.csv to load the others and write these there with a reason column"
            )
        if quarantine is not None:
            _write_rows(summary.quarantined_rows, quarantine)
    names = ", ".join(str(p) for p in paths)
    console.print(
        f"loaded {names} into organization {org}, site {site}: {summary.rows:,} rows, {summary.inserted:,} inserted, "
        f"{summary.already_present:,} already present, {summary.quarantined:,} quarantined"
        + (
            ""
            if not summary.quarantined
            else f" ({', '.join(f'{k}: {v:,}' for k, v in summary.reasons.items())}) to {quarantine}"
        ),
        soft_wrap=True,
    )
    created = [f"organization {org}"] * summary.created_organization + [f"tracking site {site}"] * summary.created_site
    if created:
        console.print(f"created {' and '.join(created)}", soft_wrap=True)
    if summary.ignored_columns:
        err.print(f"note: ignored columns (not event columns): {', '.join(summary.ignored_columns)}", soft_wrap=True)
    console.print(f"next: optiq run --org {org} --full", soft_wrap=True)


def _write_rows(rows: pl.DataFrame, path: Path) -> None:
    """Rows to ``path``: CSV for ``*.csv`` (nested columns as JSON text), else Parquet."""
    import polars as pl

    from ..errors import SinkError

    try:
        if path.suffix.lower() == ".csv":
            nested = [c for c, t in rows.schema.items() if isinstance(t, (pl.Struct, pl.List, pl.Array))]
            rows.with_columns(
                pl.col(c).struct.json_encode() if isinstance(rows.schema[c], pl.Struct) else pl.col(c).cast(pl.String)
                for c in nested
            ).write_csv(path)
        else:
            rows.write_parquet(path)
    except OSError as exc:
        raise SinkError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
