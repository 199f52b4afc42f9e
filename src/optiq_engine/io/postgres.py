"""Postgres sources: touchpoints and conversions of one organization as frames in the docs/contract.md §1 contract.

Reads go through ADBC's PostgreSQL driver, which runs the query as a binary ``COPY ... TO STDOUT`` and
decodes it straight into Arrow in C, converted to Polars batch by batch meanwhile: 0.84-1.02x (median 0.93x)
the raw binary COPY rate at 10M touchpoints, 7x faster than ``polars.read_database`` over psycopg
(``benchmarks/RESULTS.md``; the driver's wheels 1.9-1.13 are built without optimization and decode 2x
slower: ``pyproject.toml`` caps it). Every query is scoped by organization: ``TouchPoint`` and
``TrackingEvent`` rows belong to an organization through their ``TrackingSite``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from ..errors import ConfigError, InputError
from .rollup import credit_maintained

log = logging.getLogger(__name__)

__all__ = [
    "Window",
    "WriteCounts",
    "adbc_url",
    "read_touchpoints",
    "read_conversions",
    "read_events",
    "read_events_for_touchpoints",
    "read_campaigns",
    "ENGINE_TOUCHPOINT_PATTERN",
    "merge_touchpoints",
    "delete_stale_links",
    "write_touchpoints",
    "touchpoint_rows_for_postgres",
    "iter_partitions",
    "read_sql",
    "hash_partition",
    "link_rows_for_postgres",
    "write_links",
    "merge_links",
    "write_journeys",
    "merge_journeys",
    "read_stored_journeys",
    "StoredJourneys",
    "transaction",
]

_TOUCHPOINT_COLUMNS = """
    tp.id AS touchpoint_id,
    tp."anonId" AS anon_id,
    tp."occurredAt" AS occurred_at,
    s."organizationId" AS organization_id,
    tp."siteId" AS site_id,
    tp."sessionId" AS session_id,
    tp."utmSource" AS utm_source,
    tp."utmMedium" AS utm_medium,
    tp."utmCampaign" AS utm_campaign,
    tp.gclid, tp.fbclid, tp.ttclid,
    tp."platformCode"::text AS platform_code,
    tp."campaignId" AS campaign_id,
    tp."adId" AS ad_id"""

_CONVERSION_COLUMNS = """
    e.id AS conversion_id,
    e."anonId" AS anon_id,
    e."occurredAt" AS occurred_at,
    e."valueMicros" AS value_micros,
    e.name,
    s."organizationId" AS organization_id,
    e."siteId" AS site_id"""


@dataclass(frozen=True)
class Window:
    """Which rows to read: conversions in ``[start, end)`` and the touchpoints that can reach them.

    ``start=None`` / ``end=None`` leave that side open. Touchpoints (and earlier conversions, which
    bound windows under ``reset_after_conversion``) are read from ``start - lookback``. ``anon_ids``
    restricts the read to those users (incremental runs).
    """

    organization_id: str
    site_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    lookback: timedelta = timedelta(days=30)
    anon_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.organization_id:
            raise ConfigError("organization_id is required: every read is scoped by organization")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ConfigError(f"{name} must be a timezone-aware datetime, got {value!r}")
        if self.start and self.end and self.start >= self.end:
            raise ConfigError(f"start {self.start} must be before end {self.end}")

    @property
    def read_from(self) -> datetime | None:
        return None if self.start is None else self.start - self.lookback


def adbc_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ConfigError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql://{rest}"


def _property(key: str, *, empty_is_null: bool = True) -> str:
    value = f"e.properties->>'{key}'"
    return f"NULLIF({value}, '')" if empty_is_null else value


def _parameter(column: str, *keys: str, empty_is_null: bool = True) -> str:
    """The column, else the first of ``keys`` in the event's ``properties`` JSON (docs/touchpoints.md §1,
    steps 1-2; ``empty_is_null``: an empty string in ``properties`` counts as absent)."""
    return f"COALESCE(e.{column}, {', '.join(_property(k, empty_is_null=empty_is_null) for k in keys)})"


_PAGE_URL = f"COALESCE(e.url, {_property('url')}, {_property('pageUrl')})"


def _event_columns(*, for_touchpoints: bool) -> str:
    """The SELECT list of tracking events: for journeys (``read_events``) or for touchpoint extraction
    (``read_events_for_touchpoints``: also utm_term/utm_content and the page URL with a query string)."""

    def param(column: str, *keys: str) -> str:
        return _parameter(column, *keys, empty_is_null=for_touchpoints)

    extra_utm = (
        f""",
    {param('"utmTerm"', "utm_term", "utmTerm")} AS utm_term,
    {param('"utmContent"', "utm_content", "utmContent")} AS utm_content"""
        if for_touchpoints
        else ""
    )
    url = f"\n    CASE WHEN strpos({_PAGE_URL}, '?') > 0 THEN {_PAGE_URL} END AS url," if for_touchpoints else ""
    return f"""
    e.id AS event_id,
    e."anonId" AS anon_id,
    e."occurredAt" AS occurred_at,
    e.type::text AS type,
    s."organizationId" AS organization_id,
    e."siteId" AS site_id,
    e."sessionId" AS session_id,
    {param('"utmSource"', "utm_source", "utmSource")} AS utm_source,
    {param('"utmMedium"', "utm_medium", "utmMedium")} AS utm_medium,
    {param('"utmCampaign"', "utm_campaign", "utmCampaign")} AS utm_campaign{extra_utm},
    {param("gclid", "gclid")} AS gclid,
    {param("fbclid", "fbclid")} AS fbclid,
    {param("ttclid", "ttclid")} AS ttclid,{url}
    e."valueMicros" AS value_micros,
    e.name"""


_EVENT_COLUMNS = _event_columns(for_touchpoints=False)


def _where(alias: str, window: Window, *, partition: tuple[int, int] | None, probe: bool) -> tuple[str, str, list[Any]]:
    """(site clauses on ``s``, row clauses on ``alias``, parameters); with ``probe``, the anon ids are the
    last parameter and not among the row clauses (the probe form joins them)."""
    sites = ['s."organizationId" = $1']
    rows = ["TRUE"]
    params: list[Any] = [window.organization_id]
    if window.site_id is not None:
        params.append(window.site_id)
        sites.append(f"s.id = ${len(params)}")
    if window.read_from is not None:
        params.append(window.read_from)
        rows.append(f'{alias}."occurredAt" >= ${len(params)}')
    if window.end is not None:
        params.append(window.end)
        rows.append(f'{alias}."occurredAt" < ${len(params)}')
    if partition is not None:
        rows.append(hash_partition(f'{alias}."anonId"', *partition))
    if window.anon_ids is not None:
        params.append(list(window.anon_ids))
        if not probe:
            rows.append(f'{alias}."anonId" = ANY(${len(params)})')
    return " AND ".join(sites), " AND ".join(rows), params


@dataclass(frozen=True)
class _Query:
    """SELECT ``columns`` of ``table`` (as ``alias``, its site as ``s``) in a window, ``where`` on ``alias``."""

    columns: str
    table: str
    alias: str
    where: str = "TRUE"

    def sql(
        self, window: Window, partition: tuple[int, int] | None = None, *, probe: bool = False
    ) -> tuple[str, list[Any]]:
        """The query and its parameters.

        ``probe`` (only with ``window.anon_ids``): one index probe per (site, user) on the table's
        ``(siteId, anonId, occurredAt)`` index, a lateral subquery that cannot be flattened (``OFFSET 0``), so
        a nested loop whatever the statistics; else a scan with ``anonId = ANY(...)``. The index cannot serve
        that scan (its leading ``siteId`` is known only through the join), and sampled statistics undercount
        distinct anon ids 10x or more: 20k users' touchpoints looked like 970k rows of 10M and were read by a
        full scan (0.94 s).
        """
        a = self.alias
        sites, rows, params = _where(a, window, partition=partition, probe=probe)
        if not probe:
            return (
                f'SELECT {self.columns}\nFROM "{self.table}" {a} JOIN "TrackingSite" s ON s.id = {a}."siteId"\n'
                f"WHERE {sites} AND {self.where} AND {rows}",
                params,
            )
        if window.anon_ids is None:
            raise ConfigError("probe reads need window.anon_ids")
        return (
            f'SELECT {self.columns}\nFROM "TrackingSite" s\n'
            f"CROSS JOIN (SELECT DISTINCT x FROM unnest(${len(params)}::text[]) x ORDER BY x) u(anon_id)\n"
            f'CROSS JOIN LATERAL (SELECT * FROM "{self.table}" {a} WHERE {a}."siteId" = s.id '
            f'AND {a}."anonId" = u.anon_id AND {self.where} AND {rows} OFFSET 0) {a}\nWHERE {sites}',
            params,
        )


def hash_partition(column: str, i: int, n: int) -> str:
    """SQL predicate: ``column`` (an anon id) falls in slice ``i`` of ``n``.

    A user's rows land in one slice: the server-side hash of the anon id, non-negative, modulo ``n``
    (used by :func:`iter_partitions` and by the Spark JDBC reads of ``optiq_engine.spark``).
    """
    return f"(hashtextextended({column}, 0) & 9223372036854775807) % {int(n)} = {int(i)}"


_READ_TOUCHPOINTS = _Query(_TOUCHPOINT_COLUMNS, "TouchPoint", "tp")
_READ_CONVERSIONS = _Query(_CONVERSION_COLUMNS, "TrackingEvent", "e", "e.type = 'CONVERSION'")
_READ_EVENTS = _Query(_EVENT_COLUMNS, "TrackingEvent", "e")


def _inline(sql: str, params: list[Any]) -> str:
    """``sql`` with ``$n`` replaced by properly quoted literals (psycopg's quoting).

    ADBC streams a query through binary ``COPY ... TO STDOUT`` only when it has no bind parameters; with
    parameters it falls back to a slower row-by-row result.
    """
    from psycopg.sql import Literal

    for i in range(len(params), 0, -1):  # $10 before $1
        sql = sql.replace(f"${i}", Literal(params[i - 1]).as_string(None))
    return sql


def read_sql(what: str, window: Window) -> str:
    """The query of :func:`read_touchpoints` / :func:`read_conversions` / :func:`read_events` (``what``:
    ``touchpoints``, ``conversions`` or ``events``) for ``window``, parameters inlined: for other readers of
    the same rows (Spark's JDBC source)."""
    queries = {"touchpoints": _READ_TOUCHPOINTS, "conversions": _READ_CONVERSIONS, "events": _READ_EVENTS}
    if what not in queries:
        raise ConfigError(f"read_sql: what must be one of {sorted(queries)}, got {what!r}")
    return _inline(*queries[what].sql(window))


def _frame(cur: Any) -> pl.DataFrame:
    """The executed query's result as a frame, each record batch converted to Polars (a thread) while the
    driver fetches and decodes the next one, not rechunked (the batches become the frame's chunks).

    At 10M touchpoints the conversion alone took 0.7 s after the fetch (Polars copies Arrow strings into its
    own string views); overlapped, the read went from 0.81x to 0.95x of the raw binary COPY rate (medians of
    6 interleaved runs, ``benchmarks/RESULTS.md``). Rechunking took 1.5-2 s more (polars' own readers do not
    rechunk by default either).
    """
    reader = cur.fetch_record_batch()
    with ThreadPoolExecutor(max_workers=1) as pool:
        parts = [pool.submit(pl.from_arrow, batch, rechunk=False) for batch in reader]
        frames = [part.result() for part in parts]
    if not frames:
        return pl.from_arrow(reader.schema.empty_table())  # type: ignore[return-value]
    return pl.concat(frames, how="vertical", rechunk=False)


def _fetch(url: str, sql: str, params: list[Any]) -> pl.DataFrame:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(adbc_url(url)) as conn, conn.cursor() as cur:
        cur.execute(_inline(sql, params))
        return _frame(cur)


#: Index probes read one page at a time per connection (PostgreSQL 15 prefetches neither index nor heap pages
#: of a plain index scan), and a cold page costs a disk read: probe reads are split over up to this many
#: connections, at least ``_IDS_PER_CONNECTION`` ids each, so that the disk serves several reads at once.
#: Probes also go in key order (the read's ``ORDER BY``, sorted staging tables): each index page is read once
#: and in order, as are heap pages written in key order. 20k users' touchpoints at 10M, cold (server restarted,
#: OS cache dropped): 4.3 s in random order on one connection, 1.6 s on four; sorted 1.5-2.2 s, 0.74 s on four.
_PROBE_CONNECTIONS = 4
_IDS_PER_CONNECTION = 2_500


def _split(ids: Any) -> list[Any]:
    """``ids`` (a sequence or Series) in up to ``_PROBE_CONNECTIONS`` consecutive slices of at least
    ``_IDS_PER_CONNECTION`` ids (one slice if they are fewer)."""
    n = len(ids)
    k = max(1, min(_PROBE_CONNECTIONS, n // _IDS_PER_CONNECTION))
    return [ids[n * i // k : n * (i + 1) // k] for i in range(k)]


def _read(url: str, query: _Query, window: Window, partition: tuple[int, int] | None = None) -> pl.DataFrame:
    """Rows of ``query`` in ``window``: a few users' rows by index probes (split over connections,
    :func:`_split`), else by a scan (:func:`_few`: one probe per site of the organization and user, against
    the table's pages)."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(adbc_url(url)) as conn, conn.cursor() as cur:
        probe = False
        if window.anon_ids is not None:
            cur.execute(
                _inline('SELECT count(*) FROM "TrackingSite" s WHERE s."organizationId" = $1', [window.organization_id])
            )
            sites = 1 if window.site_id is not None else cur.fetchone()[0]
            users = set(window.anon_ids)
            probe = _few(cur, query.table, len(users) * max(sites, 1))
            if probe and len(parts := _split(sorted(users))) > 1:
                with ThreadPoolExecutor(max_workers=len(parts)) as pool:
                    reads = [
                        pool.submit(_fetch, url, *query.sql(replace(window, anon_ids=tuple(part)), partition, probe=True))
                        for part in parts
                    ]
                    return pl.concat([read.result() for read in reads], how="vertical", rechunk=False)
        cur.execute(_inline(*query.sql(window, partition, probe=probe)))
        return _frame(cur)


def read_touchpoints(url: str, window: Window) -> pl.DataFrame:
    """Touchpoints of ``window``'s organization (and site) from ``start - lookback`` to ``end``."""
    return _read(url, _READ_TOUCHPOINTS, window)


def read_conversions(url: str, window: Window) -> pl.DataFrame:
    """Conversions (``TrackingEvent`` of type ``CONVERSION``) of the window, with earlier context.

    Rows from ``start - lookback`` are included: an earlier conversion bounds a later one's window under
    ``reset_after_conversion``. Keep the links of conversions at or after ``start`` only.
    """
    return _read(url, _READ_CONVERSIONS, window)


def read_events(url: str, window: Window) -> pl.DataFrame:
    """Tracking events of every type (docs/contract.md §1 events frame), for sessions, touchpoints and journeys.

    Click ids and UTM parameters come from their columns or, when those are null, from the event's
    ``properties`` JSON (``gclid``, ``utm_source`` / ``utmSource``, ...).
    """
    return _read(url, _READ_EVENTS, window)


_TOUCHPOINT_EVENT_COLUMNS = _event_columns(for_touchpoints=True)


def read_events_for_touchpoints(url: str, window: Window) -> pl.DataFrame:
    """Tracking events as :func:`optiq_engine.extract_touchpoints` reads them (``docs/touchpoints.md``).

    Each marketing parameter (UTM source/medium/campaign/term/content, click ids) is its column or, when
    null, the first non-empty key of ``properties`` (resolved in SQL: ``jsonb`` is parsed already); the
    page URL (``url``, else ``properties.url`` / ``pageUrl``) comes along when it has a query string, for
    the parameters still missing.
    """
    return _read(url, _Query(_TOUCHPOINT_EVENT_COLUMNS, "TrackingEvent", "e"), window)


def read_identities(url: str, window: Window, *, key: str) -> pl.DataFrame:
    """Every tracking event of the window's organization (and site) whose ``properties`` hold ``key``, at any
    time: ``organization_id``, ``site_id``, ``anon_id``, ``occurred_at`` and ``user_id`` (the key's text) for
    identity stitching (docs/contract.md §1.5). ``key`` is validated by ``AttributionConfig``
    (:func:`optiq_engine.config.check_identity`)."""
    from psycopg.sql import Literal

    value = f"e.properties->>{Literal(key).as_string(None)}"
    columns = f"""
    s."organizationId" AS organization_id,
    e."siteId" AS site_id,
    e."anonId" AS anon_id,
    e."occurredAt" AS occurred_at,
    {value} AS user_id"""
    return _read(url, _Query(columns, "TrackingEvent", "e", f"{value} IS NOT NULL"), replace(window, start=None, end=None))


def read_campaigns(url: str, organization_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The organization's ``Campaign`` rows (with their ad account's platform) and ``Ad`` rows, as the
    ``campaigns`` and ``ads`` frames of :func:`optiq_engine.extract_touchpoints`."""
    campaigns = _fetch(
        url,
        """SELECT c.id AS campaign_id, c."externalId" AS external_id, p.code::text AS platform_code,
                  c."organizationId" AS organization_id
           FROM "Campaign" c JOIN "AdAccount" a ON a.id = c."adAccountId" JOIN "Platform" p ON p.id = a."platformId"
           WHERE c."organizationId" = $1""",
        [organization_id],
    )
    ads = _fetch(
        url,
        """SELECT ad.id AS ad_id, ad."campaignId" AS campaign_id, ad."externalId" AS external_id,
                  ad."organizationId" AS organization_id
           FROM "Ad" ad WHERE ad."organizationId" = $1""",
        [organization_id],
    )
    return campaigns, ads


def iter_partitions(url: str, window: Window, *, partitions: int) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(touchpoints, conversions) in ``partitions`` slices by a server-side hash of ``anonId``.

    A user's history is never split between slices, so attributing them one by one equals attributing
    everything at once, in about 1/partitions of the memory. Each slice is one query per table (the
    hash predicate cannot use an index, so each slice scans the organization's rows of the window).
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {partitions}")
    with ThreadPoolExecutor(max_workers=2) as pool:  # both reads at once (the driver releases the GIL)
        for i in range(partitions):
            part = None if partitions == 1 else (i, partitions)
            touchpoints = pool.submit(_read, url, _READ_TOUCHPOINTS, window, part)
            conversions = pool.submit(_read, url, _READ_CONVERSIONS, window, part)
            yield touchpoints.result(), conversions.result()


# --- writers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteCounts:
    """What a merge changed: rows inserted, rows updated (values differed), stale rows deleted."""

    inserted: int
    updated: int
    deleted: int

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


def link_rows_for_postgres(links: pl.DataFrame) -> pl.DataFrame:
    """The engine's links frame as ``AttributionLink`` rows (camelCase, with deterministic ids).

    The id is ``<conversionId>:<model>:<touchPointId>``: unique and reproduced by every rerun. Merges match
    on the natural key (conversionId, touchPointId, model), so the id scheme never decides a conflict.
    """
    return links.select(
        pl.concat_str(
            [pl.col("conversion_id"), pl.col("model").cast(pl.String), pl.col("touchpoint_id")], separator=":"
        ).alias("id"),
        pl.col("conversion_id").alias("conversionId"),
        pl.col("touchpoint_id").alias("touchPointId"),
        pl.col("model").cast(pl.String).alias("model"),
        pl.col("weight"),
        pl.col("position").cast(pl.Int32),
        pl.col("touchpoint_count").cast(pl.Int32).alias("touchPointCount"),
    )


def _key_hash(keys: pl.DataFrame) -> pl.Series:
    """64-bit hashes of the key rows (stable within this process: both sides of a diff are hashed here)."""
    return keys.hash_rows()


#: Rows per slice when a merge compares the stored and the new values of paired rows.
_DIFF_SLICE = 2_000_000


@dataclass(frozen=True)
class _Merge:
    """How new rows replace a table's rows within a scope, inside the caller's transaction.

    ``key`` is the natural key (a unique index of the table); ``values`` are compared and updated;
    ``scope_column`` names the column whose scope values are recomputed: rows in the scope that the new
    result lacks are deleted. ``scope_filter`` narrows the scope (SQL on alias ``t``, may use ``$1``...).
    ``enums`` are the columns of Postgres enum types (read back as text). ``probe``: the scope column (with
    the filter's equalities) leads an index of the table, so that a small scope is read back by index
    probes (:func:`_few`).

    The diff is computed in memory: the scope's current rows are read (binary COPY through ADBC), paired
    with the new rows on a 64-bit hash of the key (each pair's key then compared exactly; a collision falls
    back to a join on the string keys), and only the difference goes back: stale rows deleted and changed rows
    updated by id, through small temporary tables, and new rows bulk-copied straight into the table in key
    order. A rerun that changes nothing writes nothing; a first run is one binary ``COPY`` into the table.
    """

    table: str
    key: tuple[str, ...]
    values: tuple[str, ...]
    scope_column: str
    scope_filter: str = "TRUE"
    enums: tuple[str, ...] = ()
    probe: bool = True

    def _temp(self, what: str) -> str:
        return f"optiq_{what}_{self.table.lower()}"

    @property
    def scope_table(self) -> str:
        return self._temp("scope")

    def stage_scope(self, cur: Any, scope_ids: pl.Series) -> None:
        """Bulk-copy the scope's ids into a temporary table (``scope_table``), sorted: probed in index order."""
        _stage(cur, self.scope_table, "id text", pl.DataFrame({"id": scope_ids.cast(pl.String).unique()}), in_order=True)

    def read_scope(self, cur: Any, scope_ids: pl.Series, params: list[Any]) -> pl.DataFrame:
        """:meth:`stage_scope`, then :meth:`current`."""
        self.stage_scope(cur, scope_ids)
        return self.current(cur, params)

    def current(self, cur: Any, params: list[Any]) -> pl.DataFrame:
        """The scope's rows now in the table: ``id``, the key and the values (enums as text)."""
        cols = ", ".join(
            f't."{c}"::text AS "{c}"' if c in self.enums else f't."{c}"'
            for c in dict.fromkeys(("id", *self.key, *self.values))
        )
        few = False
        if self.probe:
            cur.execute(f"SELECT count(*) FROM {self.scope_table}")
            few = _few(cur, self.table, cur.fetchone()[0])
        if few:
            # One index probe per scope id: a lateral subquery that cannot be flattened (OFFSET 0) is a
            # nested loop whatever the statistics say (without any, turning hash joins off chose a nested
            # loop over the whole table instead: 22.5M links x 30k ids). A plain index scan per probe: the
            # planner, expecting thousands of rows per id, built a bitmap for each few rows (12.5k journeys'
            # events, cached: 0.60 s with bitmaps, 0.42 s without).
            sql = (
                f"SELECT t.* FROM {self.scope_table} sc CROSS JOIN LATERAL (SELECT {cols} "
                f'FROM "{self.table}" t WHERE t."{self.scope_column}" = sc.id AND {self.scope_filter} OFFSET 0) t'
            )
            with _off(cur, "enable_bitmapscan"):
                cur.execute(_inline(sql, params))
                return _frame(cur)
        sql = (
            f'SELECT {cols} FROM "{self.table}" t JOIN {self.scope_table} sc ON t."{self.scope_column}" = sc.id '
            f"WHERE {self.scope_filter}"
        )
        cur.execute(_inline(sql, params))
        return _frame(cur)

    def apply(
        self, cur: Any, rows: pl.DataFrame, params: list[Any] | None = None, current: pl.DataFrame | None = None
    ) -> WriteCounts:
        """Delete the scope's stale rows, update changed ones, insert new ones; equal rows stay untouched.

        ``rows`` has the table's columns (``id``, the key, the values). ``current``: the scope's rows as
        :meth:`current` read them; else they are read here, and the scope must be staged.
        """
        rows = rows.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String))
        if current is None:
            current = self.current(cur, params or [])
        new, changed, gone = self._diff(rows, current)
        deleted = self._delete(cur, gone)
        updated = self._update(cur, changed)
        inserted = self._insert(cur, new)
        return WriteCounts(inserted=inserted, updated=updated, deleted=deleted)

    def _diff(self, rows: pl.DataFrame, current: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
        """(rows to insert, rows to update (with the stored row's id), ids to delete).

        Rows are paired on a 64-bit hash of the key (a join of integers: joining tens of millions of string
        keys in full held both sides' every column twice and ran a 10M-touchpoint rerun out of 24 GB); each
        pair's key is then compared exactly, in slices. A hash shared by two different keys (found within a
        side, or in a pair whose keys differ) falls back to the exact join on the string keys.
        """
        if current.height == 0:
            return rows, rows.clear(), pl.Series("id", [], pl.String)
        key = list(self.key)
        current = current.cast({c: rows.schema[c] for c in current.columns if c in rows.columns})
        h_new, h_old = _key_hash(rows.select(key)), _key_hash(current.select(key))
        if h_new.n_unique() == rows.height and h_old.n_unique() == current.height:
            pairs = pl.DataFrame({"h": h_new, "n": pl.int_range(rows.height, eager=True)}).join(
                pl.DataFrame({"h": h_old, "o": pl.int_range(current.height, eager=True)}),
                on="h", how="full", coalesce=True,
            )  # fmt: skip
            both = pairs.filter(pl.col("n").is_not_null() & pl.col("o").is_not_null())
            changed = []
            for i in range(0, both.height, _DIFF_SLICE):
                n, o = both.get_column("n").slice(i, _DIFF_SLICE), both.get_column("o").slice(i, _DIFF_SLICE)
                new, old = rows.select(*key, *self.values).gather(n), current.select(*key, *self.values).gather(o)
                if not all(new.get_column(c).eq_missing(old.get_column(c)).all() for c in key):
                    break  # a hash collision: pairs whose keys differ
                differs = pl.any_horizontal(~new.get_column(c).eq_missing(old.get_column(c)) for c in self.values)
                changed.append(
                    pl.concat([current.select("id").gather(o), new.select(self.values)], how="horizontal").filter(
                        new.select(differs).to_series()
                    )
                )
            else:
                return (
                    rows.gather(pairs.filter(pl.col("o").is_null()).get_column("n")),
                    pl.concat(changed) if changed else rows.select("id", *self.values).clear(),
                    current.get_column("id").gather(pairs.filter(pl.col("n").is_null()).get_column("o")),
                )
        log.warning("%s: 64-bit key hash collision; diffing on the string keys", self.table)
        old = current.with_columns(pl.col("id").alias("__id"), pl.lit(True).alias("__old")).rename(
            {c: f"{c}__old" for c in current.columns if c not in key}
        )
        both = rows.with_columns(pl.lit(True).alias("__new")).join(old, on=key, how="full", coalesce=True)
        new = both.filter(pl.col("__old").is_null()).select(rows.columns)
        gone = both.filter(pl.col("__new").is_null()).get_column("__id").alias("id")
        differs = pl.any_horizontal(~pl.col(c).eq_missing(pl.col(f"{c}__old")) for c in self.values)
        changed = both.filter(pl.col("__new") & pl.col("__old") & differs).select(
            pl.col("__id").alias("id"), *self.values
        )
        return new, changed, gone

    def _delete(self, cur: Any, ids: pl.Series) -> int:
        if ids.len() == 0:
            return 0
        gone = self._temp("gone")
        with _primary_key_probes(cur, self.table, len(ids)) as few:
            _stage(cur, gone, "id text", pl.DataFrame({"id": ids}), in_order=few)
            return _count(cur, f'DELETE FROM "{self.table}" t USING {gone} g WHERE t.id = g.id', len(ids))

    def _update(self, cur: Any, changed: pl.DataFrame) -> int:
        if changed.height == 0:
            return 0
        stage = self._temp("changed")
        cols = ", ".join(f'"{c}"' for c in ("id", *self.values))
        assign = ", ".join(f'"{c}" = s."{c}"' for c in self.values)
        with _primary_key_probes(cur, self.table, changed.height) as few:
            _stage(cur, stage, f'AS SELECT {cols} FROM "{self.table}" WITH NO DATA', changed, in_order=few)
            return _count(
                cur,
                f'UPDATE "{self.table}" t SET {assign}, "updatedAt" = now() FROM {stage} s WHERE t.id = s.id',
                changed.height,
            )

    def _insert(self, cur: Any, new: pl.DataFrame) -> int:
        if new.height == 0:
            return 0
        new = new.sort(list(self.key))  # key order: the unique index is filled page by page, not at random
        foreign_keys = _set_based_foreign_keys(cur, self.table)
        if foreign_keys is not None:  # one locking join per foreign key instead of two triggers per row
            for column, target, target_column in foreign_keys:
                _lock_references(cur, self.table, new.get_column(column), target, target_column)
            cur.execute("SET LOCAL session_replication_role = replica")
        inserted = int(cur.adbc_ingest(self.table, new.to_arrow(), mode="append"))
        if foreign_keys is not None:
            cur.execute("SET LOCAL session_replication_role = origin")
        if inserted != new.height:
            raise RuntimeError(f"{self.table}: COPY wrote {inserted} rows, expected {new.height}")
        return inserted


_FOREIGN_KEYS = """SELECT a.attname::text, c.confrelid::regclass::text, fa.attname::text,
       cardinality(c.conkey) AS n_columns
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
WHERE c.conrelid = $1::regclass AND c.contype = 'f'
ORDER BY c.conname"""

#: Triggers that an INSERT into the table would fire in the default (origin) replication role, other than
#: the foreign-key checks of the table's own constraints (what ``_lock_references`` replaces).
_OTHER_INSERT_TRIGGERS = """SELECT count(*) FROM pg_trigger t
WHERE t.tgrelid = $1::regclass AND t.tgenabled = 'O' AND (t.tgtype & 4) <> 0
  AND NOT (t.tgisinternal AND t.tgconstraint IN (
      SELECT c.oid FROM pg_constraint c WHERE c.conrelid = $1::regclass AND c.contype = 'f'))"""


def _may_set(cur: Any, parameter: str) -> bool:
    """Whether this role may set a superuser-only ``parameter`` (superuser, or granted ``SET`` on it, PG 15+)."""
    cur.execute("SELECT current_setting('is_superuser') = 'on', current_setting('server_version_num')::int")
    superuser, version = cur.fetchone()
    if superuser:
        return True
    if version < 150000:
        return False
    cur.execute(_inline("SELECT has_parameter_privilege($1, 'SET')", [parameter]))
    return bool(cur.fetchone()[0])


def _set_based_foreign_keys(cur: Any, table: str) -> list[tuple[str, str, str]] | None:
    """The table's foreign keys as (column, referenced table, referenced column) when they may be checked
    set-based (``_lock_references``) instead of by Postgres' per-row triggers; else ``None``.

    Only when the role may set ``session_replication_role``, every foreign key has one column, and no other
    trigger fires on INSERT (a replica-role insert would skip it).
    """
    if not _may_set(cur, "session_replication_role"):
        return None
    regclass = f'"{table}"'
    cur.execute(_OTHER_INSERT_TRIGGERS, [regclass])
    if cur.fetchone()[0]:
        return None
    cur.execute(_FOREIGN_KEYS, [regclass])
    keys = cur.fetchall()
    if any(n != 1 for *_, n in keys):
        return None
    return [(column, target, target_column) for column, target, target_column, _ in keys]


def _lock_references(cur: Any, table: str, values: pl.Series, target: str, target_column: str) -> None:
    """Check that every non-null value references a row of ``target`` and lock those rows ``FOR KEY SHARE``.

    What Postgres' foreign-key trigger does for each inserted row, for all rows at once: the locks keep the
    referenced rows from being deleted (or their key changed) until this transaction ends, so the check
    holds at commit. Raises :class:`InputError` (nothing is written) when a reference is missing.
    """
    ids = values.drop_nulls().unique()
    if ids.len() == 0:
        return
    refs = f"optiq_refs_{table.lower()}"
    # Rows this transaction inserted or updated (xmin: its own xid; this code opens no subtransaction)
    # cannot be deleted by another one before it commits: found, not locked (locking writes every row).
    join = f'FROM {target} r JOIN {refs} x ON r."{target_column}" = x.v'
    # Few references are found by probes of the referenced key (74k of 10M touchpoints, an incremental run's
    # links: 0.65 s; the planner's hash join scanned the table, 3.3-5.7 s). Locked in physical order: a lock
    # rewrites the row's page, and in the order of a hash join's output each lock read and wrote back a page
    # at random (the 11M events of a 10M full run, locked alone: 167 s in the join's order, 29.5 s in ctid
    # order).
    with _primary_key_probes(cur, target.strip('"'), ids.len()) as few:
        _stage(cur, refs, f'AS SELECT "{target_column}" AS v FROM {target} WITH NO DATA', pl.DataFrame({"v": ids}), in_order=few)
        cur.execute(
            f"SELECT count(*) FROM (SELECT 1 {join} WHERE r.xmin::text <> {_MY_XID} ORDER BY r.ctid FOR KEY SHARE OF r) locked"
        )
        (locked,) = cur.fetchone()
        if locked < ids.len():  # the rest: rows this transaction wrote, or missing (a second join only then)
            cur.execute(f"SELECT count(*) {join} WHERE r.xmin::text = {_MY_XID}")
            locked += cur.fetchone()[0]
    if locked != ids.len():
        cur.execute(
            f'SELECT x.v::text FROM {refs} x WHERE NOT EXISTS (SELECT 1 FROM {target} r WHERE r."{target_column}" = x.v) '
            "ORDER BY 1 LIMIT 3"
        )
        examples = ", ".join(repr(v) for (v,) in cur.fetchall())
        missing = ids.len() - int(locked)
        raise InputError(
            f'{missing} "{values.name}" value(s) of the {table} rows reference no {target} row (e.g. {examples}); '
            "nothing was written",
            {f"missing {target} reference": missing},
        )


#: This transaction's xid as ``xmin::text`` shows it (32 bits; assigned by its first write).
_MY_XID = "(pg_current_xact_id()::text::bigint % 4294967296)::text"


def _stage(cur: Any, name: str, definition: str, rows: pl.DataFrame, *, in_order: bool = False) -> None:
    """``rows`` bulk-copied into a fresh temporary table, analyzed (temporary tables get no autovacuum: the
    planner would guess their size). No index: its joins are hash joins or probe the other side's index.
    ``in_order``: sorted by the first column (the key that probes the other side's index: see
    :func:`_primary_key_probes`)."""
    if in_order:
        rows = rows.sort(rows.columns[0])
    _temp_table(cur, name, definition)
    cur.adbc_ingest(name, rows.to_arrow(), mode="append", temporary=True)
    cur.execute(f"ANALYZE {name}")


def _temp_table(cur: Any, name: str, definition: str) -> None:
    """A temporary table dropped at commit (recreated if this transaction made one already)."""
    cur.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
    if definition.startswith("AS "):
        cur.execute(f"CREATE TEMP TABLE {name} ON COMMIT DROP {definition}")
    else:
        cur.execute(f"CREATE TEMP TABLE {name} ({definition}) ON COMMIT DROP")


def _count(cur: Any, statement: str, expected: int) -> int:
    """Run a DELETE/UPDATE and check that it touched ``expected`` rows (else a concurrent writer interfered)."""
    cur.execute(f"WITH done AS ({statement} RETURNING 1) SELECT count(*) FROM done")
    (n,) = cur.fetchone()
    if n != expected:
        raise RuntimeError(
            f"{statement.split(' t ')[0]} changed {n} rows, expected {expected}: the rows changed under this "
            "transaction (a concurrent writer?); nothing was written"
        )
    return int(n)


#: A merge finds a staged set of ids in a table by probing the table's index once per id (a nested loop)
#: when the ids are fewer than the table's pages / ``_PROBE_PAGES``, instead of reading the whole table
#: into a hash join. The planner cannot tell: tables bulk-loaded since their last ``ANALYZE`` have no
#: statistics (this machine's server runs without autovacuum), and sampled distinct counts of columns like
#: ``JourneyEvent.journeyId`` are 10x too few even after one. Measured at 10M touchpoints, after 1% of
#: users changed: reading back 30k conversions' links by a hash join scanned all 22.5M links (5.5 s; 0.7 s
#: by probes); the whole incremental run took 16-17 s with the planner's joins, 12.5-13 s probing when
#: ids * 8 < pages (links only) and 11-12 s probing every scope (ids / pages: links 0.08, journey events
#: 0.13, journeys 0.25).
_PROBE_PAGES = 2


def _few(cur: Any, table: str, ids: int) -> bool:
    """Whether ``ids`` rows of ``table`` are few enough to find by index probes (its size, not statistics)."""
    cur.execute(f"SELECT pg_relation_size('\"{table}\"') / current_setting('block_size')::int")
    return ids * _PROBE_PAGES < cur.fetchone()[0]


@contextmanager
def _primary_key_probes(cur: Any, table: str, ids: int) -> Iterator[bool]:
    """Within the block, joins are nested loops (hash and merge joins off) when ``ids`` are few for ``table``:
    for statements that join staged ids to a unique key of ``table`` (one row per probe, so the plan
    is an index probe per id with or without statistics). Transaction-local, reset after the block (an
    error rolls the transaction back). Yields whether it probes: then stage the ids sorted, so that the probes
    read each index page once and in order (unsorted, a hash join needs no order: sorting 10M ids took 3-4 s).
    """
    if not _few(cur, table, ids):
        yield False
        return
    with _off(cur, "enable_hashjoin", "enable_mergejoin"):
        yield True


@contextmanager
def _off(cur: Any, *settings: str) -> Iterator[None]:
    """Planner ``settings`` off within the block (transaction-local), reset after it (an error rolls the
    transaction back)."""
    for setting in settings:
        cur.execute(f"SET LOCAL {setting} = off")
    yield
    for setting in settings:
        cur.execute(f"RESET {setting}")


_LINKS = _Merge(
    table="AttributionLink",
    key=("conversionId", "touchPointId", "model"),
    values=("weight", "position", "touchPointCount"),
    scope_column="conversionId",
    scope_filter="t.model::text = ANY($1)",
    enums=("model",),
)

_FOREIGN_CONVERSIONS = """SELECT count(*) FROM optiq_scope_attributionlink sc
LEFT JOIN "TrackingEvent" e ON e.id = sc.id LEFT JOIN "TrackingSite" s ON s.id = e."siteId"
WHERE s."organizationId" IS DISTINCT FROM $1"""


#: Merges stage millions of ids in temporary tables and hash-join them: with the defaults (8 MB of local
#: buffers, 4 MB per hash) and a primary key on the staging table, a 2M-row scope took 13 s to copy in
#: (under 1 s now). Ceilings, allocated only as used; ``temp_buffers`` must be set before the session
#: first touches a temporary table.
_SESSION = ("SET temp_buffers = '1GB'", "SET work_mem = '256MB'")

#: Full-page images are most of what a merge writes to the WAL: the first change of a page after a checkpoint
#: logs the whole page, and the links' ``touchPointId`` index, the locked rows and the journeys' indexes are
#: changed at random. Compressed (lz4) when the server logs them raw and the role may say so (superuser, or
#: ``GRANT SET ON PARAMETER wal_compression``): an incremental run at 10M touchpoints (20k users) wrote
#: 1.18-1.28 GB of WAL, 81% page images; 0.68-0.77 GB with lz4 (``benchmarks/RESULTS.md``).
_RAW_PAGE_IMAGES = """SELECT current_setting('wal_compression') = 'off' AND 'lz4' = ANY(enumvals)
FROM pg_settings WHERE name = 'wal_compression'"""


def _compress_wal(cur: Any) -> None:
    cur.execute(_RAW_PAGE_IMAGES)
    if cur.fetchone()[0] and _may_set(cur, "wal_compression"):
        cur.execute("SET wal_compression = lz4")


@contextmanager
def transaction(url: str) -> Iterator[Any]:
    """An ADBC cursor in one transaction: committed when the block ends, rolled back on any error."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(adbc_url(url)) as conn:
        try:
            with conn.cursor() as cur:
                for setting in _SESSION:
                    cur.execute(setting)
                _compress_wal(cur)
                yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def write_links(
    url: str,
    links: pl.DataFrame,
    *,
    organization_id: str,
    conversion_ids: pl.Series,
    models: list[str],
) -> WriteCounts:
    """Replace the ``AttributionLink`` rows of ``conversion_ids`` x ``models`` with ``links``, atomically.

    In one transaction: the scope's current links are read back and compared in memory on the natural key;
    rows that no longer exist are deleted, changed ones updated, new ones bulk-copied (binary COPY through
    ADBC) straight into the table in key order, equal ones left alone, so rerunning the same window changes
    nothing and writes nothing. Readers see the old or the new result, never a mix; a failure anywhere (a
    crash included) rolls back and leaves the previous rows intact. Concurrent writers of the same rows make
    this transaction fail (a unique violation, or a count that does not match), never mix results.

    Foreign keys: a role that may set ``session_replication_role`` (a superuser, or on PostgreSQL 15+ a role
    granted ``SET ON PARAMETER session_replication_role``) checks the new rows' references set-based, one
    join per foreign key that also locks the referenced rows ``FOR KEY SHARE`` (what Postgres' per-row
    trigger does; rows this transaction wrote itself need no lock), then inserts with the per-row triggers
    off; only when no other trigger fires on INSERT. Any other role inserts through Postgres' own per-row
    checks. A missing reference writes nothing either way.

    Parameters
    ----------
    links
        The engine's links (``AttributionResult.links``) of the recomputed conversions.
    organization_id
        The tenant: every conversion in scope must belong to it, or nothing is written.
    conversion_ids
        Every conversion whose links were recomputed (attributed or not): their old links of ``models``
        that the new result does not have are deleted.
    models
        The models recomputed; links of other models are not touched.

    Raises
    ------
    InputError
        A conversion in scope outside the organization (or missing), a link of a conversion not in
        ``conversion_ids``, or (set-based check) a link whose touchpoint does not exist; nothing is written.
    """
    with transaction(url) as cur, credit_maintained(cur, organization_id, conversion_ids, models):
        return merge_links(cur, links, organization_id=organization_id, conversion_ids=conversion_ids, models=models)


def merge_links(
    cur: Any, links: pl.DataFrame, *, organization_id: str, conversion_ids: pl.Series, models: list[str]
) -> WriteCounts:
    """:func:`write_links` inside the caller's transaction (``cur`` an ADBC cursor). The caller keeps the
    service's daily credit summary right by wrapping it in :func:`optiq_engine.io.rollup.credit_maintained`."""
    rows = link_rows_for_postgres(links)
    _LINKS.stage_scope(cur, conversion_ids)
    with _primary_key_probes(cur, "TrackingEvent", conversion_ids.len()):
        cur.execute(_FOREIGN_CONVERSIONS, [organization_id])
        (foreign,) = cur.fetchone()
    if foreign:
        raise InputError(
            f"{foreign} conversion(s) in scope do not belong to organization {organization_id!r} "
            "(or do not exist); nothing was written",
            {"foreign conversion": int(foreign)},
        )
    outside = (~rows.get_column("conversionId").is_in(conversion_ids.cast(pl.String).implode())).sum()
    if outside:
        raise InputError(
            f"{outside} link(s) belong to conversions outside conversion_ids (the scope checked against the "
            "organization); nothing was written. Pass every conversion whose links are written.",
            {"link outside the scope": int(outside)},
        )
    return _LINKS.apply(cur, rows, [list(models)])


_JOURNEY_COLUMNS = {
    "journey_id": "id",
    "anon_id": "anonId",
    "session_id": "sessionId",
    "status": "status",
    "started_at": "startedAt",
    "converted_at": "convertedAt",
    "last_activity_at": "lastActivityAt",
    "conversion_value_micros": "conversionValue",
    "conversion_name": "conversionName",
    "first_utm_source": "firstUtmSource",
    "first_utm_medium": "firstUtmMedium",
    "first_utm_campaign": "firstUtmCampaign",
    "last_utm_source": "lastUtmSource",
    "last_utm_medium": "lastUtmMedium",
    "last_utm_campaign": "lastUtmCampaign",
    "touchpoint_count": "touchPointCount",
    "event_count": "eventCount",
}

_JOURNEYS = _Merge(
    table="Journey",
    key=("id",),
    values=("organizationId", *(c for c in _JOURNEY_COLUMNS.values() if c != "id")),
    scope_column="anonId",
    scope_filter='t."organizationId" = $1',
    enums=("status",),
)
_JOURNEY_EVENTS = _Merge(
    table="JourneyEvent",
    key=("journeyId", "trackingEventId"),
    values=("sequenceNumber", "occurredAt"),
    scope_column="journeyId",
)


@dataclass(frozen=True)
class StoredJourneys:
    """The stored rows that :func:`merge_journeys` compares the new journeys with (:func:`read_stored_journeys`)."""

    journeys: pl.DataFrame
    journey_events: pl.DataFrame


def read_stored_journeys(
    url: str, journeys: pl.DataFrame, *, organization_id: str, anon_ids: pl.Series
) -> StoredJourneys:
    """The ``Journey`` rows of ``anon_ids`` and the ``JourneyEvent`` rows of ``journeys`` now stored, read on
    connections of their own: to run while the writing transaction merges the links.

    For a run that holds the organization's lock (``optiq_engine.batch``), where only the engine writes these
    rows: the merge's own read would see the same rows. A row changed by some other writer in between makes
    the merge fail (a count or a unique key that does not match) or leaves that writer's values, as it would
    between the merge's read and its writes inside one transaction.
    """

    def read(merge: _Merge, ids: pl.Series, params: list[Any]) -> pl.DataFrame:
        with transaction(url) as cur:
            return merge.read_scope(cur, ids, params)

    # Cold index probes: each table's read is split over connections (:func:`_split`), all read at once.
    journey_ids = journeys.get_column("journey_id")
    with ThreadPoolExecutor(max_workers=2 * _PROBE_CONNECTIONS) as pool:
        parts = [pool.submit(read, _JOURNEYS, part, [organization_id]) for part in _split(anon_ids.unique().sort())]
        events = [pool.submit(read, _JOURNEY_EVENTS, part, []) for part in _split(journey_ids.sort())]
        return StoredJourneys(
            pl.concat([part.result() for part in parts], rechunk=False),
            pl.concat([part.result() for part in events], rechunk=False),
        )


def _read_stored_journeys(
    cur: Any, journeys: pl.DataFrame, *, organization_id: str, anon_ids: pl.Series
) -> StoredJourneys:
    return StoredJourneys(
        _JOURNEYS.read_scope(cur, anon_ids, [organization_id]),
        _JOURNEY_EVENTS.read_scope(cur, journeys.get_column("journey_id"), []),
    )


def merge_journeys(
    cur: Any,
    journeys: pl.DataFrame,
    journey_events: pl.DataFrame,
    *,
    organization_id: str,
    anon_ids: pl.Series,
    stored: StoredJourneys | None = None,
) -> tuple[WriteCounts, WriteCounts]:
    """Replace the ``Journey`` / ``JourneyEvent`` rows of ``anon_ids`` inside the caller's transaction.

    Journeys of those users that the new result lacks are deleted (their events go with them); the new
    journeys' event lists are merged. ``stored``: the rows to compare with, read ahead by
    :func:`read_stored_journeys` with the same arguments (else read here). Returns the counts of both tables.
    """
    rows = journeys.select(
        pl.lit(organization_id).alias("organizationId"),
        *(pl.col(k).alias(v) for k, v in _JOURNEY_COLUMNS.items()),
    ).with_columns(pl.col("touchPointCount", "eventCount").cast(pl.Int32))
    if stored is None:
        stored = _read_stored_journeys(cur, journeys, organization_id=organization_id, anon_ids=anon_ids)
    counts = _JOURNEYS.apply(cur, rows, [organization_id], stored.journeys)
    events = journey_events.select(
        pl.concat_str([pl.col("journey_id"), pl.col("event_id")], separator=":").alias("id"),
        pl.col("journey_id").alias("journeyId"),
        pl.col("event_id").alias("trackingEventId"),
        pl.col("sequence_number").cast(pl.Int32).alias("sequenceNumber"),
        pl.col("occurred_at").alias("occurredAt"),
    )
    return counts, _JOURNEY_EVENTS.apply(cur, events, current=stored.journey_events)


def write_journeys(
    url: str, journeys: pl.DataFrame, journey_events: pl.DataFrame, *, organization_id: str, anon_ids: pl.Series
) -> tuple[WriteCounts, WriteCounts]:
    """:func:`merge_journeys` in a transaction of its own (all or nothing)."""
    with transaction(url) as cur:
        return merge_journeys(cur, journeys, journey_events, organization_id=organization_id, anon_ids=anon_ids)


#: Ids of engine-extracted ``TouchPoint`` rows (``docs/touchpoints.md`` §5); the platform's CUIDs never match.
ENGINE_TOUCHPOINT_PATTERN = "^tp_[0-9a-f]{32}$"

_TOUCHPOINT_ROW_COLUMNS = {
    "anon_id": "anonId",
    "session_id": "sessionId",
    "occurred_at": "occurredAt",
    "gclid": "gclid",
    "fbclid": "fbclid",
    "ttclid": "ttclid",
    "utm_source": "utmSource",
    "utm_medium": "utmMedium",
    "utm_campaign": "utmCampaign",
    "platform_code": "platformCode",
    "campaign_id": "campaignId",
    "ad_id": "adId",
}

_TOUCHPOINTS = _Merge(
    table="TouchPoint",
    key=("id",),
    values=("siteId", "trackingEventId", *_TOUCHPOINT_ROW_COLUMNS.values()),
    scope_column="anonId",
    # Only engine rows, of the organization's sites (or the one site): platform rows are never deleted.
    scope_filter=(
        f"t.id ~ '{ENGINE_TOUCHPOINT_PATTERN}' AND ($2::text IS NULL OR t.\"siteId\" = $2) AND "
        't."siteId" IN (SELECT ts.id FROM "TrackingSite" ts WHERE ts."organizationId" = $1)'
    ),
    enums=("platformCode",),
    probe=False,  # anonId leads no index of TouchPoint (siteId does)
)

_FOREIGN_TOUCHPOINT_SITES = """SELECT x.site FROM unnest($3::text[]) AS x(site)
LEFT JOIN "TrackingSite" s ON s.id = x.site
WHERE s."organizationId" IS DISTINCT FROM $1 OR ($2::text IS NOT NULL AND x.site IS DISTINCT FROM $2)"""


def touchpoint_rows_for_postgres(touchpoints: pl.DataFrame, *, site_id: str | None = None) -> pl.DataFrame:
    """Extracted touchpoints as ``TouchPoint`` rows (camelCase; ``trackingEventId`` is ``event_id``)."""
    site = pl.col("site_id") if "site_id" in touchpoints.columns else pl.lit(site_id, pl.String)
    return touchpoints.select(
        pl.col("touchpoint_id").alias("id"),
        site.alias("siteId"),
        pl.col("event_id").alias("trackingEventId"),
        *(pl.col(k).alias(v) for k, v in _TOUCHPOINT_ROW_COLUMNS.items()),
    )


def merge_touchpoints(
    cur: Any,
    touchpoints: pl.DataFrame,
    *,
    organization_id: str,
    anon_ids: pl.Series,
    site_id: str | None = None,
) -> WriteCounts:
    """Replace the engine-extracted ``TouchPoint`` rows of ``anon_ids`` inside the caller's transaction.

    Parameters
    ----------
    cur
        An ADBC cursor (:func:`transaction`); merge touchpoints before the links that reference them.
    touchpoints
        :attr:`optiq_engine.TouchpointExtraction.touchpoints` of the users in scope (``site_id`` column, or
        the ``site_id`` argument; ``event_id`` must be ``TrackingEvent.id``).
    organization_id
        The tenant: every touchpoint's site must belong to it, or nothing is written.
    anon_ids
        The users whose touchpoints were recomputed: their engine rows that the new result lacks are
        deleted (cascading to their links).
    site_id
        Restrict the scope to one tracking site (the run's ``--site``).

    Returns
    -------
    WriteCounts

    Raises
    ------
    InputError
        A touchpoint id that is not an engine id (``tp_`` + 32 hex digits), or a site outside the
        organization; nothing is written.

    Notes
    -----
    Rows whose id is not an engine id (the platform's CUIDs) are never deleted or updated
    (``docs/touchpoints.md`` §5).
    """
    ids = touchpoints.get_column("touchpoint_id")
    foreign_ids = ids.is_null().sum() + (~ids.str.contains(ENGINE_TOUCHPOINT_PATTERN)).sum()
    if foreign_ids:
        raise InputError(
            f"{foreign_ids} touchpoint id(s) are not engine ids (tp_ + 32 hex digits); nothing was written. "
            "Write touchpoints from extract_touchpoints() only.",
            {"not an engine touchpoint id": int(foreign_ids)},
        )
    rows = touchpoint_rows_for_postgres(touchpoints, site_id=site_id)
    sites = rows.get_column("siteId").unique().to_list()
    cur.execute(_inline(_FOREIGN_TOUCHPOINT_SITES, [organization_id, site_id, sites]))  # a bound None: untyped
    bad_sites = [site for (site,) in cur.fetchall()]
    if bad_sites:
        foreign = (
            rows.get_column("siteId").is_in(pl.Series(bad_sites, dtype=pl.String).implode(), nulls_equal=True).sum()
        )
        raise InputError(
            f"{foreign} touchpoint(s) belong to a site outside organization {organization_id!r}"
            + ("" if site_id is None else f" or site {site_id!r}")
            + " (or to no site); nothing was written",
            {"foreign site": int(foreign)},
        )
    _TOUCHPOINTS.stage_scope(cur, anon_ids)
    return _TOUCHPOINTS.apply(cur, rows, [organization_id, site_id])


def delete_stale_links(cur: Any, *, organization_id: str, models: Sequence[str], site_id: str | None = None) -> int:
    """Delete the links of other models that point at touchpoints extraction no longer attributes to.

    After :func:`merge_touchpoints` in the same transaction (it staged the users in scope): the users'
    touchpoints are now the engine's rows only, so links of models not in ``models`` (not rewritten by
    this run) that point at other ``TouchPoint`` rows of those users (the platform's, read by an earlier
    run that did not extract) are stale and removed. Links of extracted rows that went away went with
    them already (``ON DELETE CASCADE``). Returns the number of links deleted.

    Parameters
    ----------
    cur
        An ADBC cursor inside the writing transaction (:func:`transaction`).
    organization_id
        The tenant.
    models
        The models this run wrote (their links are merged by :func:`merge_links`, never touched here).
    site_id
        Restrict to one tracking site (the run's ``--site``).
    """
    statement = _inline(
        f"""DELETE FROM "AttributionLink" l USING "TouchPoint" tp, "TrackingSite" s
        WHERE l."touchPointId" = tp.id AND s.id = tp."siteId" AND s."organizationId" = $1
          AND ($2::text IS NULL OR tp."siteId" = $2) AND NOT (l.model::text = ANY($3::text[]))
          AND tp.id !~ '{ENGINE_TOUCHPOINT_PATTERN}'
          AND tp."anonId" IN (SELECT id FROM pg_temp.{_TOUCHPOINTS.scope_table})""",
        [organization_id, site_id, [str(m) for m in models]],
    )
    cur.execute(f"WITH done AS ({statement} RETURNING 1) SELECT count(*) FROM done")
    (n,) = cur.fetchone()
    return int(n)


def write_touchpoints(
    url: str, touchpoints: pl.DataFrame, *, organization_id: str, anon_ids: pl.Series, site_id: str | None = None
) -> WriteCounts:
    """:func:`merge_touchpoints` in a transaction of its own (all or nothing)."""
    with transaction(url) as cur:
        return merge_touchpoints(cur, touchpoints, organization_id=organization_id, anon_ids=anon_ids, site_id=site_id)
