"""Load tracking events into an Optiq database: frames or files in, ``"TrackingEvent"`` rows out.

The way in for a user's own data (``optiq db load``) and for the simulator's (``optiq demo --database-url``).
Events are validated by the frame contract (:func:`optiq_engine.frames.normalize_events`,
``docs/contract.md`` §1), staged with one ``COPY`` into a temporary table and inserted with
``INSERT ... ON CONFLICT DO NOTHING``: a load is idempotent on ``("siteId", "eventId")`` (a rerun inserts
nothing; a stored event is never changed) and all or nothing (one transaction).

Every load is scoped to one organization and one of its tracking sites: a site of another organization is
refused, and nothing of another organization is read or written.

Examples
--------
>>> from optiq_engine.io.load import load_events
>>> summary = load_events(events, "postgresql://postgres@127.0.0.1:5432/optiq",
...                       organization_id="acme", site_id="acme-web", create=True)  # doctest: +SKIP
>>> summary.inserted, summary.already_present  # doctest: +SKIP
(1000, 0)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from ..config import check_on_invalid
from ..errors import ConfigError, InputError, SchemaError
from ..frames import TIMESTAMP, normalize_events, to_polars

__all__ = ["LoadSummary", "load_events", "EVENT_COLUMNS"]

#: Columns of the events frame and the ``"TrackingEvent"`` columns they go to.
EVENT_COLUMNS: Mapping[str, str] = {
    "event_id": "eventId",
    "type": "type",
    "name": "name",
    "occurred_at": "occurredAt",
    "anon_id": "anonId",
    "session_id": "sessionId",
    "url": "url",
    "referrer": "referrer",
    "utm_source": "utmSource",
    "utm_medium": "utmMedium",
    "utm_campaign": "utmCampaign",
    "utm_term": "utmTerm",
    "utm_content": "utmContent",
    "gclid": "gclid",
    "fbclid": "fbclid",
    "ttclid": "ttclid",
    "value_micros": "valueMicros",
    "properties": "properties",
}
#: Columns checked against the load's scope (a row of another organization or site is invalid).
_SCOPE_COLUMNS = ("organization_id", "site_id")
_TEXT = tuple(c for c in EVENT_COLUMNS if c not in ("occurred_at", "value_micros", "properties", "type"))
_STAGE = "optiq_load_events"
_COPY_ROWS = 500_000  # rows per CSV chunk sent to COPY (bounds the memory of the text)


@dataclass(frozen=True)
class LoadSummary:
    """What :func:`load_events` did.

    Parameters
    ----------
    organization_id, site_id, rows, inserted, already_present
        The fields described under Attributes.
    quarantined, reasons
        Default 0 and empty.
    created_organization, created_site
        Default False.
    ignored_columns
        Default empty.
    quarantined_rows
        Default: an empty frame.

    Attributes
    ----------
    organization_id, site_id
        The scope of the load.
    rows
        Input rows.
    inserted
        New ``"TrackingEvent"`` rows.
    already_present
        Valid rows whose ``(site, event_id)`` was already stored (left as they were).
    quarantined
        Invalid rows set aside (``on_invalid="quarantine"``); by reason in ``reasons``.
    created_organization, created_site
        Whether the load created the ``"Organization"`` / ``"TrackingSite"`` row.
    ignored_columns
        Input columns that are not event columns (not stored).
    quarantined_rows
        The invalid rows, with a ``reason`` column.
    """

    organization_id: str
    site_id: str
    rows: int
    inserted: int
    already_present: int
    quarantined: int = 0
    reasons: Mapping[str, int] = field(default_factory=dict)
    created_organization: bool = False
    created_site: bool = False
    ignored_columns: tuple[str, ...] = ()
    quarantined_rows: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False, compare=False)


def load_events(
    events: Any,
    url_or_connection: Any,
    *,
    organization_id: str,
    site_id: str,
    create: bool = False,
    domain: str | None = None,
    on_invalid: Literal["raise", "quarantine"] = "raise",
    **options: Any,
) -> LoadSummary:
    """Insert tracking events into ``"TrackingEvent"`` of one organization's site, idempotently.

    Parameters
    ----------
    events
        A polars (lazy), pyarrow or pandas frame of events (``docs/contract.md`` §1): ``event_id``,
        ``anon_id``, ``occurred_at``, ``type`` (``PAGE_VIEW`` | ``CONVERSION`` | ``CUSTOM``), optional
        ``session_id``, ``name``, ``url``, ``referrer``, ``utm_source`` ... ``utm_content``, ``gclid``,
        ``fbclid``, ``ttclid``, ``value_micros`` (integer micros), ``properties`` (JSON text or a struct).
        ``organization_id`` / ``site_id`` columns, if present, must name the load's scope. Other columns
        are ignored (listed in :attr:`LoadSummary.ignored_columns`).
    url_or_connection
        A PostgreSQL URL (``postgresql://...``, ``postgresql+psycopg://...``), a psycopg 3 connection or
        a SQLAlchemy connection (psycopg driver). A connection is used as it is and not closed: the load
        runs in a savepoint of the caller's transaction, which the caller commits (on an autocommit
        psycopg connection, in a transaction of its own).
    organization_id
        The tenant.
    site_id
        The ``"TrackingSite"`` id; it must belong to ``organization_id``.
    create
        Create the organization (name and slug: its id) and the site (name: its id, domain: ``domain``
        or the site id, a random public key) when missing. Without it, a missing one is an error.
    domain
        The new site's domain (with ``create``).
    on_invalid
        ``"raise"``: any invalid row fails the load (nothing is written). ``"quarantine"``: invalid rows
        are set aside (:attr:`LoadSummary.quarantined_rows`, with a ``reason``) and the others loaded.
    options
        Passed to :func:`~optiq_engine.frames.normalize_events` (``timezone``, ``timestamp_format``,
        ``value_column``, ``value_unit``: how to read naive timestamps, other time spellings and money in
        currency units; ``docs/contract.md`` §1.1-§1.2).

    Returns
    -------
    LoadSummary
        Counts: rows, inserted, already present, quarantined (by reason).

    Raises
    ------
    InputError
        Invalid rows with ``on_invalid="raise"`` (counts by reason in ``.counts``); nothing was written.
    SchemaError
        A required column is missing or has the wrong type.
    ConfigError
        The organization or site is missing (without ``create``), or the site belongs to another
        organization.

    Notes
    -----
    Invalid rows are those of :func:`~optiq_engine.frames.normalize_events` (null or empty ids, bad
    timestamps, unknown ``type``, negative or non-integer ``value_micros`` ...), plus a repeated
    ``event_id`` (the later rows), ``properties`` that are not JSON, and an ``organization_id`` /
    ``site_id`` other than the load's. A stored event whose ``eventId`` comes again is left as it is
    (counted as already present), whatever the new row holds. ``"TrackingEvent".id`` is
    ``ev_`` + md5 of ``site_id:event_id`` (the same event always gets the same id). ``valueMicros`` is
    stored null for events other than conversions whose value is 0 or absent.
    """
    _check_arguments(on_invalid, organization_id=organization_id, site_id=site_id)
    frame = to_polars(events, what="events")
    used = {*EVENT_COLUMNS, *_SCOPE_COLUMNS, options.get("value_column")}
    ignored = tuple(c for c in frame.columns if c not in used)
    rows, bad = _validate(frame, organization_id=organization_id, site_id=site_id, options=options)
    reasons = dict(bad.group_by("reason").len().sort("reason").iter_rows()) if bad.height else {}
    if bad.height and on_invalid == "raise":
        _refuse_invalid(bad, reasons)
    with _transaction(url_or_connection, organization_id=organization_id) as conn:
        created_org, created_site = _ensure_scope(
            conn, organization_id=organization_id, site_id=site_id, create=create, domain=domain
        )
        inserted = _insert(conn, rows, site_id=site_id)
    return LoadSummary(
        organization_id=organization_id,
        site_id=site_id,
        rows=frame.height,
        inserted=inserted,
        already_present=rows.height - inserted,
        quarantined=bad.height,
        reasons=reasons,
        created_organization=created_org,
        created_site=created_site,
        ignored_columns=ignored,
        quarantined_rows=bad,
    )


def _check_arguments(on_invalid: str, *, organization_id: str, site_id: str) -> None:
    """Refuse an unknown ``on_invalid`` and an empty (or non-string) organization or site id."""
    check_on_invalid(on_invalid)
    for name, value in (("organization_id", organization_id), ("site_id", site_id)):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")


def _refuse_invalid(bad: pl.DataFrame, reasons: Mapping[str, int]) -> None:
    """Raise :class:`InputError` for the invalid rows ``bad`` (counts by reason: ``reasons``): nothing is loaded."""
    summary = ", ".join(f"{k}: {v:,}" for k, v in reasons.items())
    raise InputError(
        f"{bad.height:,} invalid event row(s) ({summary}); nothing was loaded. Fix the input, or pass "
        "on_invalid='quarantine' to load the valid rows and get these back with a reason",
        reasons,
    )


def _validate(
    frame: pl.DataFrame, *, organization_id: str, site_id: str, options: Mapping[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows as ``"TrackingEvent"`` columns, invalid rows with a ``reason``)."""
    bad: list[pl.DataFrame] = []
    if "event_id" in frame.columns and frame.height:
        # A repeated id: the first row stays, the later ones are invalid (the contract refuses them all).
        repeated = pl.col("event_id").is_not_null() & ~pl.col("event_id").is_first_distinct()
        flagged = frame.with_columns(repeated.alias("_repeated"))
        bad.append(
            flagged.filter("_repeated").drop("_repeated").with_columns(pl.lit("duplicate event_id").alias("reason"))
        )
        frame = flagged.filter(~pl.col("_repeated")).drop("_repeated")
    normalized = normalize_events(frame, on_invalid="quarantine", **options)
    good = normalized.frame
    if normalized.quarantined.height:
        bad.append(normalized.quarantined)
    checks = [
        (f"{col} is not {want!r}", pl.col(col).is_not_null() & (pl.col(col) != want))
        for col, want in (("organization_id", organization_id), ("site_id", site_id))
        if col in good.columns
    ]
    properties = _properties(good)
    if properties is not None:
        checks.append(("unparseable properties", properties.is_null() & pl.col("properties").is_not_null()))
        good = good.with_columns(properties.alias("_properties"))
    if checks:
        reason: Any = pl.when(checks[0][1]).then(pl.lit(checks[0][0]))  # Then, then ChainedThen
        for name, cond in checks[1:]:
            reason = reason.when(cond).then(pl.lit(name))
        good = good.with_columns(reason.alias("reason"))
        bad.append(good.filter(pl.col("reason").is_not_null()).drop("_properties", strict=False))
        good = good.filter(pl.col("reason").is_null()).drop("reason")
    text = [_text(good, c).alias(c) for c in _TEXT if c in good.columns]
    value = pl.col("value_micros") if "value_micros" in good.columns else pl.lit(None, pl.Int64)
    rows = good.with_columns(text).select(
        *(pl.col(c) if c in good.columns else pl.lit(None, pl.String).alias(c) for c in _TEXT),
        pl.col("type").cast(pl.String),
        pl.col("occurred_at").cast(TIMESTAMP),
        # No value on a page view is null, as the tracker stores it; a conversion's is an integer (0 if none).
        pl.when((pl.col("type") == "CONVERSION") | (value != 0)).then(value).otherwise(None).alias("value_micros"),
        (pl.col("_properties") if "_properties" in good.columns else pl.lit(None, pl.String)).alias("properties"),
    )
    quarantined = _stack(bad) if bad else frame.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
    return rows, quarantined


def _stack(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Invalid rows of every check in one frame (as text where their types disagree: raw and coerced rows)."""
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        as_text = [
            f.with_columns(
                pl.col(c).struct.json_encode() if isinstance(t, pl.Struct) else pl.col(c).cast(pl.String)
                for c, t in f.schema.items()
            )
            for f in frames
        ]
        return pl.concat(as_text, how="diagonal_relaxed")


def _text(frame: pl.DataFrame, col: str) -> pl.Expr:
    dtype = frame.schema[col]
    if dtype == pl.String:
        return pl.col(col)
    if dtype == pl.Null or dtype.is_integer() or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return pl.col(col).cast(pl.String)
    raise SchemaError(f"events column {col!r} must hold strings, got {dtype}")


def _properties(frame: pl.DataFrame) -> pl.Expr | None:
    """``properties`` as JSON text (null where it is not JSON), or None when there is no such column."""
    if "properties" not in frame.columns:
        return None
    dtype = frame.schema["properties"]
    if isinstance(dtype, (pl.Struct, pl.List)):
        return (
            pl.col("properties").struct.json_encode()
            if isinstance(dtype, pl.Struct)
            else pl.col("properties").cast(pl.String)
        )
    if dtype == pl.Null:
        return pl.col("properties").cast(pl.String)
    if dtype != pl.String:
        raise SchemaError(f"events column 'properties' must hold JSON text or a struct, got {dtype}")
    values = frame.get_column("properties").drop_nulls().unique()
    broken = [v for v in values if not _is_json(v)]
    if not broken:
        return pl.col("properties")
    return (
        pl.when(pl.col("properties").is_in(pl.Series(broken, dtype=pl.String).implode()))
        .then(None)
        .otherwise(pl.col("properties"))
    )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return "\x00" not in text and "\\u0000" not in text  # jsonb cannot hold NUL


@contextmanager
def _transaction(url_or_connection: Any, *, organization_id: str | None = None) -> Iterator[Any]:
    """A psycopg connection inside a transaction: a new connection (committed, closed) for a URL, else a
    transaction (a savepoint if one is open) on the caller's connection, which stays open.

    On a connection of its own the transaction's ``optiq.organization_id`` is ``organization_id``: a role
    bound by the row-level security of migration 0007 (not the tables' owner) then sees and writes that
    organization's rows only. A caller's connection keeps the caller's settings.
    """
    import psycopg

    if isinstance(url_or_connection, str):
        from .postgres import adbc_url

        with psycopg.connect(adbc_url(url_or_connection)) as conn, conn.transaction():
            if organization_id is not None:
                conn.execute("SELECT set_config('optiq.organization_id', %s, true)", (organization_id,))
            yield conn
        return
    conn = url_or_connection
    if not isinstance(conn, psycopg.Connection):
        driver = getattr(getattr(conn, "connection", None), "driver_connection", None)  # SQLAlchemy
        if not isinstance(driver, psycopg.Connection):
            raise ConfigError(
                f"url_or_connection must be a PostgreSQL URL, a psycopg connection or a SQLAlchemy connection "
                f"with the psycopg driver, got {type(url_or_connection).__name__}"
            )
        conn.exec_driver_sql("SELECT 1")  # SQLAlchemy's transaction is open: ours is a savepoint in it
        conn = driver
    elif not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("SELECT 1")  # open the caller's transaction: ours is a savepoint in it, the commit theirs
    with conn.transaction():
        yield conn


def _ensure_scope(
    conn: Any, *, organization_id: str, site_id: str, create: bool, domain: str | None
) -> tuple[bool, bool]:
    """Check (or create) the organization and its site; whether each was created."""
    created_org = created_site = False
    if conn.execute('SELECT 1 FROM "Organization" WHERE id = %s', (organization_id,)).fetchone() is None:
        if not create:
            raise ConfigError(
                f"no organization {organization_id!r} in the database: create it with create=True "
                "(optiq db load --create), or check the id"
            )
        done = conn.execute(
            'INSERT INTO "Organization" (id, name, slug) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING',
            (organization_id, organization_id, organization_id),
        ).rowcount
        if (
            not done
            and conn.execute('SELECT 1 FROM "Organization" WHERE id = %s', (organization_id,)).fetchone() is None
        ):
            raise ConfigError(
                f"cannot create organization {organization_id!r}: its slug is taken by another organization"
            )
        created_org = bool(done)
    owner = _site_owner(conn, site_id)
    if owner is None:
        if not create:
            raise ConfigError(
                f"no tracking site {site_id!r} in the database: create it with create=True "
                "(optiq db load --create), or check the id"
            )
        done = conn.execute(
            """INSERT INTO "TrackingSite" (id, "organizationId", name, domain, "publicKey")
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            (site_id, organization_id, site_id, domain or site_id, f"pk_{secrets.token_hex(16)}"),
        ).rowcount
        owner = _site_owner(conn, site_id)
        if owner is None:
            raise ConfigError(
                f"cannot create tracking site {site_id!r}: organization {organization_id!r} has a site with "
                f"domain {domain or site_id!r} already; pass another domain"
            )
        created_site = bool(done)
    if owner != organization_id:
        raise ConfigError(
            f"tracking site {site_id!r} belongs to another organization, not {organization_id!r}: "
            "load into a site of this organization (or a new site id with create=True)"
        )
    return created_org, created_site


def _site_owner(conn: Any, site_id: str) -> str | None:
    row = conn.execute('SELECT "organizationId" FROM "TrackingSite" WHERE id = %s', (site_id,)).fetchone()
    return None if row is None else row[0]


def _insert(conn: Any, rows: pl.DataFrame, *, site_id: str) -> int:
    """Stage ``rows`` with one CSV ``COPY`` and insert the new ones; the number inserted."""
    columns = [*_TEXT, "type", "occurred_at", "value_micros", "properties"]
    definition = ", ".join(
        f"{c} {'timestamptz' if c == 'occurred_at' else 'bigint' if c == 'value_micros' else 'text'}" for c in columns
    )
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{_STAGE}")
    conn.execute(f"CREATE TEMP TABLE {_STAGE} ({definition}) ON COMMIT DROP")
    with conn.cursor().copy(f"COPY {_STAGE} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        # Polars' CSV: a null is an empty field, an empty string a quoted "" (COPY reads them the same way).
        for chunk in rows.select(columns).iter_slices(_COPY_ROWS):
            copy.write(chunk.write_csv(include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.6f%z"))
    targets = ", ".join(f'"{EVENT_COLUMNS[c]}"' for c in columns)
    values = ", ".join(
        'type::"EventType"' if c == "type" else "properties::jsonb" if c == "properties" else c for c in columns
    )
    return conn.execute(
        f"""INSERT INTO "TrackingEvent" (id, "siteId", {targets})
            SELECT 'ev_' || md5(%(site)s || ':' || event_id), %(site)s, {values} FROM {_STAGE}
            ON CONFLICT DO NOTHING""",
        {"site": site_id},
    ).rowcount
