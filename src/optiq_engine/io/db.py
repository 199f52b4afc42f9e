"""Migrations of the Optiq Postgres schema: upgrade, downgrade, stamp and inspect a database.

The schema is :mod:`optiq_engine.io.schema`; its history is the Alembic scripts shipped in
``optiq_engine/io/migrations`` (configured here, no ``alembic.ini``). Alembic records the revision of a
database in its ``alembic_version`` table.

A database the Optiq platform created (Prisma migrations) already has the Optiq tables but no Alembic
revision. :func:`upgrade` refuses to touch it; check it with :func:`compare`, then :func:`stamp` it
(``optiq db stamp``) so that later upgrades start from there. Nothing here drops a table except
:func:`downgrade`, and it refuses to lose data: a downgrade that would drop tables or columns holding rows,
or (to ``base``) the platform's own tables of a database the platform made, raises
:class:`DataLossError` (what it would drop, with row counts) unless ``force=True``
(``optiq db downgrade REVISION --force``).

Examples
--------
>>> from optiq_engine.io import db
>>> db.upgrade("postgresql://postgres@127.0.0.1:5432/optiq")  # doctest: +SKIP
>>> db.current("postgresql://postgres@127.0.0.1:5432/optiq")  # doctest: +SKIP
'0001'
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import URL, Column, Connection, Engine, Index, Table, create_engine, inspect, pool, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigError, OptiqError, SchemaError
from . import schema

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIR",
    "normalise_url",
    "upgrade",
    "downgrade",
    "DataLossError",
    "current",
    "head",
    "stamp",
    "has_optiq_tables",
    "compare",
]

logger = logging.getLogger(__name__)

#: The Alembic script directory shipped with the package.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PRISMA_TABLE = "_prisma_migrations"
#: Tables whose rows are derived, and rebuilt when needed, so that dropping them loses nothing: the change
#: log of incremental runs (migration 0008; after it comes back, every organization's next run is full).
_DERIVED_TABLES = frozenset({"EngineChange"})
_TIMESTAMPTZ_PRECISIONS = text(
    "SELECT table_name, column_name, datetime_precision FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND data_type = 'timestamp with time zone'"
)


class DataLossError(OptiqError, RuntimeError):
    """A downgrade would drop tables or columns holding rows (or the platform's own tables); nothing was changed.

    Parameters
    ----------
    message
        The refusal, listing each table or column with its rows and how to go on.
    drops
        Copied into :attr:`drops`.
    revision
        Stored as :attr:`revision`.

    Attributes
    ----------
    drops
        What the downgrade would drop and how many rows each holds: ``{'"TouchPoint"': 7_500_000,
        '"EngineRun"."watermark"': 12}`` (a column counts its non-null values).
    revision
        The target revision of the refused downgrade.
    """

    def __init__(self, message: str, *, drops: dict[str, int], revision: str) -> None:
        super().__init__(message)
        self.drops = dict(drops)
        self.revision = revision


def normalise_url(url: str | URL) -> str:
    """The SQLAlchemy URL of a Postgres database, with the psycopg 3 driver unless another is named.

    Parameters
    ----------
    url
        ``postgresql://user@host:port/db`` (or ``postgres://``, ``postgresql+psycopg://``, a
        :class:`sqlalchemy.URL`).

    Returns
    -------
    str
        The URL as a string, password included, e.g. ``postgresql+psycopg://user@host:port/db``.

    Raises
    ------
    ConfigError
        If the URL cannot be parsed or is not a PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {url!r}; expected postgresql://user@host:port/database") from exc
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        raise ConfigError(
            f"the Optiq schema needs PostgreSQL, got a {backend!r} URL "
            f"({parsed.render_as_string(hide_password=True)}); expected postgresql://user@host:port/database"
        )
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _display(url: str | URL) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _engine(url: str | URL) -> Iterator[Engine]:
    engine = create_engine(normalise_url(url), poolclass=pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _config(url: str | URL | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config of the shipped scripts; the database goes through ``attributes`` (see env.py)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = normalise_url(url)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _current(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _optiq_tables(connection: Connection) -> list[str]:
    present = set(inspect(connection).get_table_names())
    return [name for name in schema.TABLE_NAMES if name in present]


def head() -> str:
    """The head revision of the shipped migrations (the revision :func:`upgrade` goes to by default)."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None  # the package ships at least one revision
    return revision


def current(url: str | URL) -> str | None:
    """The Alembic revision of the database, or ``None`` if it has none (empty or not managed by Alembic).

    Parameters
    ----------
    url
        Database URL (``postgresql://...``).

    Returns
    -------
    str or None
        The revision id (``"0008"``).

    Raises
    ------
    ConfigError
        ``url`` is not a PostgreSQL URL (:func:`normalise_url`).
    """
    with _engine(url) as engine, engine.connect() as connection:
        return _current(connection)


def has_optiq_tables(url: str | URL) -> bool:
    """Whether any table of the Optiq schema exists in the database's default schema.

    Parameters
    ----------
    url
        Database URL (``postgresql://...``).

    Returns
    -------
    bool
        True when at least one table of :data:`optiq_engine.io.schema.TABLE_NAMES` exists.

    Raises
    ------
    ConfigError
        ``url`` is not a PostgreSQL URL (:func:`normalise_url`).
    """
    with _engine(url) as engine, engine.connect() as connection:
        return bool(_optiq_tables(connection))


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database up to ``revision``, creating the Optiq schema in an empty database.

    The check and the migration run in one transaction.

    Parameters
    ----------
    url
        Database URL (``postgresql://...``).
    revision
        Target revision (``"head"``, ``"0001"``, ``"+1"``).

    Raises
    ------
    SchemaError
        If the database has Optiq tables but no Alembic revision (e.g. the platform made it with Prisma):
        nothing is created or dropped; check it with :func:`compare`, then run ``optiq db stamp``.
    ConfigError
        ``url`` is not a PostgreSQL URL (:func:`normalise_url`).
    """
    from alembic import command

    with _engine(url) as engine, engine.begin() as connection:
        found = _optiq_tables(connection)
        if found and _current(connection) is None:
            made_by = (
                "the Optiq platform's Prisma migrations (it has a _prisma_migrations table)"
                if inspect(connection).has_table(_PRISMA_TABLE)
                else "something other than Optiq Engine's migrations"
            )
            shown = ", ".join(f'"{name}"' for name in found[:4]) + (", ..." if len(found) > 4 else "")
            raise SchemaError(
                f"{_display(url)} already has {len(found)} of the {len(schema.TABLE_NAMES)} Optiq tables "
                f"({shown}) but no Alembic revision: it was made by {made_by}. Nothing was created or "
                f"dropped. Check that its schema is compatible (optiq_engine.io.db.compare(url) lists the "
                f"differences), then run `optiq db stamp` to mark it as at revision {head()}; later upgrades "
                f"start from there."
            )
        logger.info("upgrading %s to %s", _display(url), revision)
        command.upgrade(_config(url, connection), revision)


def downgrade(url: str | URL, revision: str, *, force: bool = False) -> dict[str, int]:
    """Migrate the database down to ``revision``, refusing to drop data unless ``force``.

    The downgrade is first tried inside a savepoint of the migration's transaction and rolled back; the
    tables and columns it dropped are then counted (rows; non-null values for a column; the change log
    ``"EngineChange"`` is derived and not counted). If any holds
    rows, or the target is ``base`` and the database was made by the platform (it has a
    ``_prisma_migrations`` table: the seed schema's tables are the platform's, not the engine's),
    :class:`DataLossError` is raised and nothing is changed. Otherwise (or with ``force``) the downgrade
    runs for real, in the same transaction.

    Parameters
    ----------
    url
        Database URL (``postgresql://...``).
    revision
        Target revision (``"base"``, ``"-1"``, a revision id). There is no default: dropping data is
        never implicit.
    force
        Drop the tables and columns even if they hold rows.

    Returns
    -------
    dict of str to int
        What was dropped that held rows (table ``'"Name"'`` or column ``'"Table"."column"'`` to rows);
        empty when nothing held any.

    Raises
    ------
    DataLossError
        Without ``force``, when the downgrade would drop rows (or the platform's tables); the message
        lists each table or column with its row count, and how to go on (a backup, then ``--force``).
    ConfigError
        ``url`` is not a PostgreSQL URL (:func:`normalise_url`).

    Examples
    --------
    >>> db.downgrade("postgresql://postgres@127.0.0.1:5432/optiq", "0003")  # doctest: +SKIP
    Traceback (most recent call last):
    optiq_engine.io.db.DataLossError: downgrading ... to 0003 would drop "EngineCreditDaily" (1,204 rows) ...
    """
    from alembic import command

    with _engine(url) as engine, engine.begin() as connection:
        before = _columns(connection)
        trial = connection.begin_nested()  # a dry run: Postgres DDL is transactional
        try:
            command.downgrade(_config(url, connection), revision)
            after = _columns(connection)
        finally:
            trial.rollback()
        dropped_tables = sorted(set(before) - set(after))
        dropped_columns = sorted(
            (table, column) for table in after if table in before for column in set(before[table]) - set(after[table])
        )
        drops: dict[str, int] = {}
        for table in (t for t in dropped_tables if t not in _DERIVED_TABLES):
            (rows,) = connection.execute(text(f'SELECT count(*) FROM "{table}"')).one()
            if rows:
                drops[f'"{table}"'] = int(rows)
        for table, column in dropped_columns:
            (rows,) = connection.execute(text(f'SELECT count("{column}") FROM "{table}"')).one()
            if rows:
                drops[f'"{table}"."{column}"'] = int(rows)
        platform = [name for name in dropped_tables if name in schema.TABLE_NAMES and name not in schema.ENGINE_TABLES]
        platform_made = bool(platform) and inspect(connection).has_table(_PRISMA_TABLE)
        if (drops or platform_made) and not force:
            raise DataLossError(
                _refusal(url, revision, drops, platform if platform_made else []), drops=drops, revision=revision
            )
        if drops:
            logger.warning("downgrading %s to %s drops %s", _display(url), revision, _listing(drops))
        logger.info("downgrading %s to %s", _display(url), revision)
        command.downgrade(_config(url, connection), revision)
    return drops


def _columns(connection: Connection) -> dict[str, set[str]]:
    """Every table of the current schema and its columns (read from the catalog, never cached)."""
    rows = connection.execute(
        text(
            "SELECT c.relname::text, a.attname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped"
        )
    ).all()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


def _listing(drops: dict[str, int]) -> str:
    return ", ".join(f"{name} ({rows:,} row{'s' if rows != 1 else ''})" for name, rows in drops.items())


def _refusal(url: str | URL, revision: str, drops: dict[str, int], platform: list[str]) -> str:
    parts = []
    if drops:
        parts.append(f"would drop {len(drops)} table(s)/column(s) holding rows: {_listing(drops)}")
    if platform:
        parts.append(
            f"would drop the platform's own tables ({len(platform)}, e.g. "
            f"{', '.join(repr(n) for n in platform[:3])}) of a database the platform made (_prisma_migrations)"
        )
    return (
        f"downgrading {_display(url)} to {revision} {'; and '.join(parts)}. Nothing was changed. Back them up "
        f"first (pg_dump --data-only), then pass --force (optiq db downgrade {revision} --force; "
        f"db.downgrade(url, {revision!r}, force=True) in Python)"
    )


def stamp(url: str | URL, revision: str = "head") -> str:
    """Record ``revision`` as the database's Alembic revision without running any migration.

    For a database whose Optiq tables were made outside Optiq Engine (by the platform): after
    checking it with :func:`compare`, stamp it at head. Differences still found are logged as warnings.
    A database without the engine's own tables (``EngineRun``, ...: what the platform makes) is stamped
    at ``0001`` instead, the revision of the platform's schema, so that :func:`upgrade` then adds them
    (and the daily summaries' triggers). Returns the revision stamped.

    Parameters
    ----------
    url
        Database URL (``postgresql://...``).
    revision
        Revision to record (``"head"`` by default; ``"base"`` clears the record).

    Returns
    -------
    str
        The revision recorded: ``revision``, or ``"0001"`` for ``"head"`` on a database without the engine's
        tables.

    Raises
    ------
    SchemaError
        If the database has no Optiq table and ``revision`` is not ``"base"``: stamping it would make
        :func:`upgrade` skip creating the schema; run ``optiq db upgrade`` instead.
    ConfigError
        ``url`` is not a PostgreSQL URL (:func:`normalise_url`).
    """
    from alembic import command

    if revision != "base" and not has_optiq_tables(url):
        raise SchemaError(
            f"{_display(url)} has no Optiq table, so stamping it at {revision!r} would leave it without a "
            f"schema; run `optiq db upgrade` to create the schema instead."
        )
    if revision == "head":
        with _engine(url) as engine, engine.connect() as connection:
            missing = set(schema.ENGINE_TABLES) - set(_optiq_tables(connection))
        if missing:
            logger.info(
                "%s has no %s: stamping at 0001; `optiq db upgrade` adds them",
                _display(url),
                ", ".join(sorted(missing)),
            )
            revision = "0001"
    # What revisions 0002+ add: expected missing at 0001.
    ignored = {*schema.ENGINE_TABLES, "AlertEvent_alertRuleId_key"} if revision == "0001" else set()
    for difference in compare(url) if revision != "base" else []:
        if not any(f"'{table}'" in difference or f'"{table}"' in difference for table in ignored):
            logger.warning("stamping %s although it differs from the Optiq schema: %s", _display(url), difference)
    with _engine(url) as engine, engine.begin() as connection:
        logger.info("stamping %s at %s", _display(url), revision)
        command.stamp(_config(url, connection), revision)
    return revision


def compare(url: str | URL) -> list[str]:
    """Differences between the database and the Optiq schema; empty when they match.

    Compares tables, columns (types, nullability), indexes, unique and foreign key constraints (Alembic
    autogenerate), the precision of ``timestamp with time zone`` columns (Prisma's default is
    milliseconds) and the values of the enum types. Tables that are not Optiq's are ignored; server
    defaults are not compared.

    Parameters
    ----------
    url
        Database URL (``postgresql://...``).

    Returns
    -------
    list of str
        One line per difference, e.g. ``'missing table "TouchPoint"'``.

    Raises
    ------
    ConfigError
        ``url`` is not a PostgreSQL URL (:func:`normalise_url`).
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return type_ != "table" or name in schema.metadata.tables

    with _engine(url) as engine, engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
        differences = [_describe(diff) for diff in compare_metadata(context, schema.metadata)]
        enums = {enum["name"]: tuple(enum["labels"]) for enum in cast(Any, inspect(connection)).get_enums()}
        precisions = connection.execute(_TIMESTAMPTZ_PRECISIONS).all()
    for table, column, precision in precisions:
        if table in schema.metadata.tables and column in schema.metadata.tables[table].c and precision != 6:
            differences.append(
                f'precision of "{table}"."{column}": database timestamp({precision}) with time zone, '
                f"schema microseconds, timestamp(6) with time zone"
            )
    for name, values in schema.ENUM_TYPES.items():
        if name not in enums:
            differences.append(f'missing enum type "{name}" {values}')
        elif enums[name] != values:
            missing = [v for v in values if v not in enums[name]]
            extra = [v for v in enums[name] if v not in values]
            differences.append(
                f'enum type "{name}" has {enums[name]}, expected {values} (missing {missing}, extra {extra})'
            )
    return differences


def _describe(diff: Any) -> str:
    """One line for an Alembic autogenerate difference (a tuple, or a list of column-level tuples)."""
    if isinstance(diff, list):
        return "; ".join(_describe(d) for d in diff)
    kind, *args = diff
    if kind.startswith("modify_"):
        _, table, column, _, old, new = args
        return f'{kind.removeprefix("modify_")} of "{table}"."{column}": database {old!r}, schema {new!r}'
    words = {"add": "missing", "remove": "unexpected"}
    verb, _, what = kind.partition("_")
    names = []
    for arg in args:
        if isinstance(arg, Table):
            names.append(f'"{arg.name}"')
        elif isinstance(arg, Column):
            names.append(f'"{arg.table.name}"."{arg.name}"')
        elif isinstance(arg, Index):
            names.append(f'"{arg.name}" on "{getattr(arg.table, "name", None)}" {[c.name for c in arg.columns]}')
        elif hasattr(arg, "table") and hasattr(arg, "name"):  # constraints
            names.append(f'"{arg.name}" on "{arg.table.name}"')
    if not names:  # e.g. a table given by name only
        names = [f'"{arg}"' for arg in args if isinstance(arg, str) and arg]
    return f"{words.get(verb, verb)} {what} {' '.join(names)}".strip()
