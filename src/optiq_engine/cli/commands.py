"""The ``optiq`` app: its ``--debug`` option, and its commands and groups in the order ``optiq --help``
lists them (each defined in a module of its own; the service's in :mod:`optiq_engine.service.cli`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..service.cli import alerts_app, keys_app, serve
from . import attribute, db, demo, run, warmup
from .output import new_app, set_debug

__all__ = ["app", "main"]

app = new_app("Optiq Engine: marketing attribution.")


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


app.command()(demo.demo)
app.command()(warmup.warmup)
app.command()(attribute.attribute)
app.add_typer(db.db_app, name="db")
app.command()(run.run)
app.add_typer(alerts_app, name="alerts")
app.add_typer(keys_app, name="keys")
app.command("serve")(serve)


def main() -> None:
    app()
