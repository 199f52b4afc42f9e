"""Shared test settings: Hypothesis profiles (``HYPOTHESIS_PROFILE=thorough`` for long runs), Numba's
thread waiting, the PostgreSQL fixture and the markers derived from fixtures."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Numba's OpenMP threads spin between parallel regions by default: fastest on an idle machine, but with
# pytest, Postgres and Spark sharing 2 cores every region of a tiny test input waited ~3 ms for spinning
# threads (extract_touchpoints on 10 events: 350 ms instead of 60). Set before any kernel runs; the
# subprocesses the tests start inherit it. The threads and the code they run are unchanged.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
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
# Every database and role a test creates is named by tests/support/pg.py (OPTIQ_TEST_PREFIX, default a prefix
# new for each session) and dropped; what a crashed test leaves is dropped when the session ends.

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.support import pg  # noqa: E402

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
        psycopg.connect(admin.render_as_string(hide_password=False), connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"OPTIQ_REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is not reachable: {exc}")
        pytest.skip(f"PostgreSQL at {admin} is not reachable ({exc}); set OPTIQ_TEST_DATABASE_URL")
    with pg.fresh_database(admin.render_as_string(hide_password=False), kind="session") as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that takes the ``postgres_url`` fixture (directly or through another) ``postgres``,
    and every one that takes a ``spark`` session ``spark`` (the markers of pyproject.toml; ``make test-fast``)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_url" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "spark" in fixtures:
            item.add_marker(pytest.mark.spark)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the databases and roles this session created and a failing test left behind."""
    if any(item.get_closest_marker("postgres") for item in session.items):
        left = pg.drop_leftovers(PG_URL)
        if left:
            print(f"\ndropped test objects left on the server: {', '.join(left)}")
