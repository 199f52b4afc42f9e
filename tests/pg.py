"""Helpers for tests against the real PostgreSQL server (see the ``postgres_url`` fixture in conftest)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


@contextmanager
def fresh_database(postgres_url: str, *, prefix: str = "optiq_test") -> Iterator[str]:
    """A new empty database on the test server (URL with the psycopg driver), dropped afterwards."""
    admin = make_url(postgres_url).set(drivername="postgresql", database="postgres")
    admin_dsn = admin.render_as_string(hide_password=False)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
