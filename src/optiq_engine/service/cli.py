"""Command line of the service: ``optiq alerts ...``, ``optiq keys ...`` and ``optiq serve``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from ..cli.output import EXIT_FAILED, console, fail, new_app, new_table, one_line_errors

__all__ = ["alerts_app", "keys_app", "serve"]

alerts_app = new_app("Alert rules and events: evaluate due rules, list, acknowledge, resolve, dismiss.")
keys_app = new_app("API keys of the HTTP API (stored hashed, one organization each).")

DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="OPTIQ_DATABASE_URL", help="PostgreSQL URL.")]
Org = Annotated[str, typer.Option("--org", help="Organization id.")]


def _engine(url: str):
    from sqlalchemy import create_engine, pool

    from ..io.db import normalise_url

    return create_engine(normalise_url(url), poolclass=pool.NullPool)


def _parse_now(now: str | None) -> datetime | None:
    if now is None:
        return None
    try:
        value = datetime.fromisoformat(now)
    except ValueError:
        fail(f"--now must be an ISO 8601 time, got {now!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@alerts_app.command("evaluate")
def evaluate(
    database_url: DatabaseUrl,
    org: Annotated[str | None, typer.Option("--org", help="Only this organization's rules.")] = None,
    now: Annotated[
        str | None, typer.Option(help="Evaluate as of this instant (ISO 8601, UTC if naive); default now.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate at most this many rules.")] = None,
) -> None:
    """Evaluate the rules that are due (ACTIVE, lastEvaluatedAt + evaluationInterval <= now).

    Safe to run in several workers at once (FOR UPDATE SKIP LOCKED). Exit code 1 if a rule failed to
    evaluate (it is retried at its next due time), 2 on bad arguments or an unreachable database.
    """
    from .alerts import evaluate_due

    with one_line_errors():
        engine = _engine(database_url)
        try:
            done = evaluate_due(engine, organization_id=org, now=_parse_now(now), limit=limit)
        finally:
            engine.dispose()
    table = new_table(f"{len(done)} rule(s) evaluated", "organization", "rule", "action", "event")
    for e in done:
        action = e.action if not e.error else f"[red]error: {escape(e.error)}[/]"
        table.add_row(escape(e.organization_id), escape(e.rule_id), action, escape(e.event_id or ""))
    console.print(table)
    if any(e.error for e in done):
        raise typer.Exit(code=EXIT_FAILED)


@alerts_app.command("list")
def list_events(
    database_url: DatabaseUrl,
    org: Org,
    status: Annotated[str | None, typer.Option(help="TRIGGERED, ACKNOWLEDGED, RESOLVED or DISMISSED.")] = None,
    limit: int = 50,
) -> None:
    """List the organization's alert events, newest first."""
    from .alerts import read_events

    with one_line_errors():
        engine = _engine(database_url)
        with engine.connect() as conn:
            rows = read_events(conn, organization_id=org, status=status, limit=limit)
        engine.dispose()
    table = new_table(f"alert events of {org}", "id", "triggered", "status", "severity", "title")
    for r in rows:
        table.add_row(*(escape(str(r[k])) for k in ("id", "triggeredAt", "status", "severity", "title")))
    console.print(table)


def _transition(name: str):
    def command(
        database_url: DatabaseUrl,
        org: Org,
        event_id: Annotated[str, typer.Argument(help="AlertEvent id.")],
        by: Annotated[str, typer.Option("--by", help="User id of who does it (a member of the organization).")],
    ) -> None:
        from . import alerts

        with one_line_errors():
            engine = _engine(database_url)
            try:
                with engine.begin() as conn:
                    row = getattr(alerts, name)(conn, event_id, organization_id=org, by=by)
            finally:
                engine.dispose()
        console.print(f"{row['id']}: {row['status']}", soft_wrap=True, markup=False)

    command.__doc__ = f"{name.capitalize()} an alert event (who: --by; when: now). Invalid transitions exit 2."
    return command


for _name in ("acknowledge", "resolve", "dismiss"):
    alerts_app.command(_name)(_transition(_name))


@alerts_app.command("create-rule")
def create_rule(
    database_url: DatabaseUrl,
    org: Org,
    name: Annotated[str, typer.Option(help="Rule name.")],
    type_: Annotated[
        str,
        typer.Option("--type", help="SPEND_THRESHOLD, CONVERSION_DROP, CPA_SPIKE, ROAS_DROP, CLICK_ANOMALY or CUSTOM."),
    ],
    config: Annotated[str, typer.Option(help="The config JSON, e.g. '{\"threshold\": 10000000}'.")] = "{}",
    severity: str = "WARNING",
    interval: Annotated[int, typer.Option(help="Seconds between evaluations.")] = 3600,
    in_app: Annotated[bool, typer.Option(help="Notify the members in the app.")] = True,
) -> None:
    """Create an alert rule (its config is validated; every bad field is listed)."""
    from .alerts import create_rule as create

    try:
        parsed = json.loads(config)
    except json.JSONDecodeError as exc:
        fail(f"--config is not JSON: {exc}")
    with one_line_errors():
        engine = _engine(database_url)
        try:
            with engine.begin() as conn:
                row = create(
                    conn,
                    organization_id=org,
                    name=name,
                    type=type_,
                    config=parsed,
                    severity=severity,
                    evaluation_interval=interval,
                    notify_in_app=in_app,
                )
        finally:
            engine.dispose()
    console.print(row["id"], soft_wrap=True, markup=False)


@keys_app.command("create")
def create_key(
    database_url: DatabaseUrl,
    org: Org,
    user: Annotated[
        str, typer.Option("--user", help="User id (a member of the organization; the key gets their role).")
    ],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "api",
) -> None:
    """Create an API key and print it (shown once; only its hash is stored)."""
    from .keys import create_api_key

    with one_line_errors():
        engine = _engine(database_url)
        try:
            with engine.begin() as conn:
                _, key = create_api_key(conn, organization_id=org, user_id=user, name=name)
        finally:
            engine.dispose()
    console.print(key, soft_wrap=True, markup=False)


@keys_app.command("revoke")
def revoke_key(
    database_url: DatabaseUrl, org: Org, key_id: Annotated[str, typer.Argument(help="The key id (after 'optiq_').")]
) -> None:
    """Revoke an API key of the organization."""
    from .keys import revoke_api_key

    with one_line_errors():
        engine = _engine(database_url)
        try:
            with engine.begin() as conn:
                revoke_api_key(conn, key_id, organization_id=org)
        finally:
            engine.dispose()
    console.print(f"revoked {key_id}", soft_wrap=True, markup=False)


def serve(
    database_url: DatabaseUrl,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (0: one per core).", min=0)] = 0,
) -> None:
    """Serve the HTTP API (metrics, credit, alerts, alert rules) with uvicorn; needs the service extra.

    Worker processes take Polars' thread count from POLARS_MAX_THREADS, 1 unless set: a report's frame
    is small and requests run side by side, so more threads per request only add contention. Each worker
    handles OPTIQ_SERVICE_DB_CONNECTIONS / (2 x workers) requests at once (32 connections in all by
    default), queues the rest and answers 503 with Retry-After past its queue; every transaction acts as
    the optiq_service role under row-level security (docs/service.md).
    """
    import os

    try:
        import uvicorn
    except ImportError:
        fail('the HTTP API needs the service extra: pip install "optiq-engine[service]"')
    os.environ["OPTIQ_DATABASE_URL"] = database_url
    os.environ.setdefault("POLARS_MAX_THREADS", "1")  # read by the spawned workers' Polars
    workers = workers or os.cpu_count() or 1
    os.environ["OPTIQ_SERVICE_WORKERS"] = str(workers)  # each worker sizes its pool and queue from it (service.limits)
    uvicorn.run(
        "optiq_engine.service.api:create_app", factory=True, host=host, port=port, workers=workers, log_level="info"
    )
