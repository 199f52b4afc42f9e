"""Alembic environment of Optiq Engine, configured programmatically (no ``alembic.ini``).

:mod:`optiq_engine.io.db` builds the :class:`alembic.config.Config` and passes the database through its
``attributes``: ``attributes["connection"]`` (a SQLAlchemy connection to run on, inside the caller's
transaction) or ``attributes["url"]`` (a SQLAlchemy URL; an engine is created and disposed here). A
``sqlalchemy.url`` main option is honoured as a fallback, so the stock ``alembic`` command works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from optiq_engine.io import schema

config = context.config
target_metadata = schema.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass Config.attributes['url'] or ['connection'] (see optiq_engine.io.db)")
    from optiq_engine.io.db import normalise_url

    return normalise_url(url)


def _configure(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations instead of running them (``--sql``)."""
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection given by the caller, or on a new one to the given URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
