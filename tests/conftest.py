"""Shared test settings: Hypothesis profiles (``HYPOTHESIS_PROFILE=thorough`` for long runs)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
# CI runs the same examples every time (a landing must not depend on luck); developers' runs explore new
# random examples, and HYPOTHESIS_PROFILE=thorough explores many more.
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


# --- PostgreSQL -------------------------------------------------------------------------------------
# Tests that need the server take the ``postgres_url`` fixture: a fresh database for the session, dropped
# afterwards. Without a reachable server they skip, unless OPTIQ_REQUIRE_POSTGRES=1 (CI), which fails them.

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

PG_URL = os.environ.get("OPTIQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("OPTIQ_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL (psycopg 3 driver) of a fresh, empty database for this test session."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError as exc:  # pragma: no cover - the dev extra installs both
        if REQUIRE_POSTGRES:
            pytest.fail(f"OPTIQ_REQUIRE_POSTGRES=1 but the postgres extra is not installed: {exc}")
        pytest.skip(f"postgres extra not installed: {exc}")
    admin = make_url(PG_URL).set(drivername="postgresql")
    try:
        conn = psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"OPTIQ_REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is not reachable: {exc}")
        pytest.skip(f"PostgreSQL at {admin} is not reachable ({exc}); set OPTIQ_TEST_DATABASE_URL")
    name = f"optiq_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
