"""Names and databases on the test server (see the ``postgres_url`` fixture in conftest).

Every database and role a test creates is named :func:`object_name`: ``OPTIQ_TEST_PREFIX`` (default
``optiq_t_<8 hex>_``, new for each test session, so sessions sharing a server never touch each other's
objects), a kind and a random suffix. Each is dropped by whoever created it; :func:`drop_leftovers`, run
at the end of the session, drops any that a crashed test left behind.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,29}")


def _prefix() -> str:
    chosen = os.environ.get("OPTIQ_TEST_PREFIX")
    if chosen is None:
        return f"optiq_t_{uuid.uuid4().hex[:8]}_"
    if not _NAME.fullmatch(chosen):
        raise ValueError(
            f"OPTIQ_TEST_PREFIX={chosen!r}: use at most 30 lower-case letters, digits and underscores, not starting "
            "with a digit (it starts the names of the test databases and roles)"
        )
    return chosen


#: The start of every database and role name this test session creates.
PREFIX = _prefix()
#: Whether PREFIX was generated for this session (then everything named with it is this session's).
PREFIX_IS_OURS = "OPTIQ_TEST_PREFIX" not in os.environ
_created: dict[str, set[str]] = {"database": set(), "role": set()}


def object_name(kind: str, *, record: str | None = None) -> str:
    """A new name ``<PREFIX><kind>_<12 hex>`` (lower case: safe unquoted, within Postgres' 63 bytes).

    ``record``: ``"database"`` or ``"role"``, to have :func:`drop_leftovers` drop it if it is left over.
    """
    name = f"{PREFIX}{kind}_{uuid.uuid4().hex[:12]}"
    if record is not None:
        _created[record].add(name)
    return name


def admin_dsn(url: str) -> str:
    """A libpq connection string to the ``postgres`` database of the server ``url`` names."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


_templates: dict[str, str] = {}  # server (admin DSN) -> a database of this session upgraded to head


def _upgraded_template(postgres_url: str) -> str:
    """The name of this session's database at the schema's head revision on the server of ``postgres_url``
    (migrated once, on first use; copied by ``fresh_database(upgraded=True)``; dropped at the end)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from optiq_engine.io import db

    server = admin_dsn(postgres_url)
    if server not in _templates:
        name = object_name("head", record="database")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db.upgrade(
            make_url(postgres_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
        _templates[server] = name
    return _templates[server]


@contextmanager
def fresh_database(
    postgres_url: str, *, kind: str = "db", upgraded: bool = False, copy_of: str | None = None
) -> Iterator[str]:
    """A new database on the test server (URL with the psycopg driver), dropped afterwards: empty, or with
    ``upgraded`` at the schema's head revision (a file copy of a database this session migrated once:
    ~0.3 s instead of ~5 s of migrations; the migrations themselves are tested on empty databases), or
    with ``copy_of`` (the URL of a database on the same server nobody is connected to) a copy of it: a
    module seeds one database and each test gets its own copy."""
    import psycopg
    from sqlalchemy.engine import make_url

    template = ""
    if copy_of is not None:
        template = f' TEMPLATE "{make_url(copy_of).database}"'
    elif upgraded:
        template = f' TEMPLATE "{_upgraded_template(postgres_url)}"'
    name = object_name(kind, record="database")
    with psycopg.connect(admin_dsn(postgres_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{template}')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn(postgres_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _created["database"].discard(name)


def drop_leftovers(url: str) -> list[str]:
    """Drop the databases and roles of this session that still exist (those recorded by
    :func:`object_name` and, when the prefix was generated for this session, any starting with it); the
    names dropped. Nothing to do when the server is unreachable (the tests needing it did not run)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the dev extra installs it
        return []
    try:
        conn = psycopg.connect(admin_dsn(url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        return []
    pattern = PREFIX.replace("_", r"\_") + "%" if PREFIX_IS_OURS else None
    dropped = []
    with conn:
        for kind, sql in (
            ("database", "SELECT datname FROM pg_database WHERE datname = ANY(%s) OR datname LIKE %s"),
            ("role", "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) OR rolname LIKE %s"),
        ):
            names = [r[0] for r in conn.execute(sql, [sorted(_created[kind]), pattern]).fetchall()]
            for name in names:
                if kind == "database":
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:  # its objects and privileges went with the databases above, or it stays and is named
                    try:
                        conn.execute(f'DROP ROLE IF EXISTS "{name}"')
                    except psycopg.errors.DependentObjectsStillReferenced as exc:
                        exc.add_note(f"the test role {name} still holds privileges: drop them and the role by hand")
                        raise
            dropped += names
            _created[kind].clear()
    _templates.clear()
    return dropped
