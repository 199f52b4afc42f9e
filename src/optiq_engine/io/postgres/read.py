"""Reading an organization's rows from Postgres as frames in the docs/contract.md §1 contract.

Reads go through ADBC's PostgreSQL driver, which runs the query as a binary ``COPY ... TO STDOUT`` and
decodes it straight into Arrow in C, converted to Polars batch by batch meanwhile: 0.84-1.02x (median 0.93x)
the raw binary COPY rate at 10M touchpoints, 7x faster than ``polars.read_database`` over psycopg
(``benchmarks/RESULTS.md``; the driver's wheels 1.9-1.13 are built without optimization and decode 2x
slower: ``pyproject.toml`` caps it). Every query is scoped by organization: ``TouchPoint`` and
``TrackingEvent`` rows belong to an organization through their ``TrackingSite``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

import polars as pl

from ...errors import ConfigError
from .connections import Connections, _inline, connections

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

    Parameters
    ----------
    organization_id
        ``Organization.id`` (required: every read is scoped by it).
    site_id
        One of its ``TrackingSite`` ids; None (default): every site of the organization.
    start, end
        Timezone-aware bounds of the conversions read, ``[start, end)``; None (default): open.
    lookback
        How far before ``start`` touchpoints and earlier conversions are read (default 30 days; a run passes
        its longest lookback).
    anon_ids
        Only these users' rows; None (default): every user. An empty tuple reads nothing.

    Raises
    ------
    ConfigError
        An empty ``organization_id``, a naive or non-datetime bound, or ``start >= end``.
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

    Parameters
    ----------
    column
        An SQL expression of the anon id (``tp."anonId"``), inserted as is.
    i, n
        The slice (``0 <= i < n``, not checked) and the number of slices; both inserted as integers.

    Returns
    -------
    str
        The predicate.
    """
    return f"(hashtextextended({column}, 0) & 9223372036854775807) % {int(n)} = {int(i)}"


_READ_TOUCHPOINTS = _Query(_TOUCHPOINT_COLUMNS, "TouchPoint", "tp")
_READ_CONVERSIONS = _Query(_CONVERSION_COLUMNS, "TrackingEvent", "e", "e.type = 'CONVERSION'")
_READ_EVENTS = _Query(_EVENT_COLUMNS, "TrackingEvent", "e")


def read_sql(what: str, window: Window) -> str:
    """The query of :func:`read_touchpoints` / :func:`read_conversions` / :func:`read_events` (``what``:
    ``touchpoints``, ``conversions`` or ``events``) for ``window``, parameters inlined: for other readers of
    the same rows (Spark's JDBC source).

    Parameters
    ----------
    what
        ``"touchpoints"``, ``"conversions"`` or ``"events"``.
    window
        The rows to read (scans: ``anon_ids`` become an ``= ANY(...)`` clause).

    Returns
    -------
    str
        A query without bind parameters.

    Raises
    ------
    ConfigError
        An unknown ``what``.
    """
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
        frames = [cast(pl.DataFrame, part.result()) for part in parts]  # a record batch is a frame
    if not frames:
        return pl.from_arrow(reader.schema.empty_table())  # type: ignore[return-value]
    return pl.concat(frames, how="vertical", rechunk=False)


def _fetch(url: str | Connections, sql: str, params: list[Any]) -> pl.DataFrame:
    with connections(url) as db, db.connection() as conn, conn.cursor() as cur:
        cur.execute(_inline(sql, params))
        return _frame(cur)


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


def _read(
    url: str | Connections, query: _Query, window: Window, partition: tuple[int, int] | None = None
) -> pl.DataFrame:
    """Rows of ``query`` in ``window``: a few users' rows by index probes (split over connections,
    :func:`_split`), else by a scan (:func:`_few`: one probe per site of the organization and user, against
    the table's pages)."""
    with connections(url) as db, db.connection() as conn, conn.cursor() as cur:
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
                        pool.submit(
                            _fetch, db, *query.sql(replace(window, anon_ids=tuple(part)), partition, probe=True)
                        )
                        for part in parts
                    ]
                    return pl.concat([read.result() for read in reads], how="vertical", rechunk=False)
        cur.execute(_inline(*query.sql(window, partition, probe=probe)))
        return _frame(cur)


def read_touchpoints(url: str | Connections, window: Window) -> pl.DataFrame:
    """Touchpoints of ``window``'s organization (and site) from ``start - lookback`` to ``end``.

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a pool of its own for
        this call).
    window
        The rows to read.

    Returns
    -------
    polars.DataFrame
        The touchpoints frame of docs/contract.md §1 (``touchpoint_id``, ``anon_id``, ``occurred_at``,
        ``organization_id``, ``site_id``, ``session_id``, UTM and click-id columns, ``platform_code``,
        ``campaign_id``, ``ad_id``), in no particular order.

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    return _read(url, _READ_TOUCHPOINTS, window)


def read_conversions(url: str | Connections, window: Window) -> pl.DataFrame:
    """Conversions (``TrackingEvent`` of type ``CONVERSION``) of the window, with earlier context.

    Rows from ``start - lookback`` are included: an earlier conversion bounds a later one's window under
    ``reset_after_conversion``. Keep the links of conversions at or after ``start`` only.

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a pool of its own for
        this call).
    window
        The rows to read.

    Returns
    -------
    polars.DataFrame
        ``conversion_id``, ``anon_id``, ``occurred_at``, ``value_micros``, ``name``, ``organization_id``,
        ``site_id``.

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    return _read(url, _READ_CONVERSIONS, window)


def read_events(url: str | Connections, window: Window) -> pl.DataFrame:
    """Tracking events of every type (docs/contract.md §1 events frame), for sessions, touchpoints and journeys.

    Click ids and UTM parameters come from their columns or, when those are null, from the event's
    ``properties`` JSON (``gclid``, ``utm_source`` / ``utmSource``, ...).

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a pool of its own for
        this call).
    window
        The rows to read (a run passes its users' whole history: no ``start`` or ``end``).

    Returns
    -------
    polars.DataFrame
        The events frame of docs/contract.md §1.

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    return _read(url, _READ_EVENTS, window)


_TOUCHPOINT_EVENT_COLUMNS = _event_columns(for_touchpoints=True)


def read_events_for_touchpoints(url: str | Connections, window: Window) -> pl.DataFrame:
    """Tracking events as :func:`optiq_engine.extract_touchpoints` reads them (``docs/touchpoints.md``).

    Each marketing parameter (UTM source/medium/campaign/term/content, click ids) is its column or, when
    null, the first non-empty key of ``properties`` (resolved in SQL: ``jsonb`` is parsed already); the
    page URL (``url``, else ``properties.url`` / ``pageUrl``) comes along when it has a query string, for
    the parameters still missing.

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a pool of its own for
        this call).
    window
        The rows to read.

    Returns
    -------
    polars.DataFrame
        The events frame, with ``utm_term``, ``utm_content`` and ``url`` (null without a query string) too.

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    return _read(url, _Query(_TOUCHPOINT_EVENT_COLUMNS, "TrackingEvent", "e"), window)


def read_identities(url: str | Connections, window: Window, *, key: str) -> pl.DataFrame:
    """Every tracking event of the window's organization (and site) whose ``properties`` hold ``key``, at any
    time: ``organization_id``, ``site_id``, ``anon_id``, ``occurred_at`` and ``user_id`` (the key's text) for
    identity stitching (docs/contract.md §1.5). ``key`` is validated by ``AttributionConfig``
    (:func:`optiq_engine.config.check_identity`).

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a pool of its own for
        this call).
    window
        Its organization, site and ``anon_ids`` scope the read; ``start`` and ``end`` are ignored.
    key
        The key of ``TrackingEvent.properties`` holding the user id (``AttributionConfig.identity_key``).

    Returns
    -------
    polars.DataFrame
        One row per identified event.

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    from psycopg.sql import Literal

    value = f"e.properties->>{Literal(key).as_string(None)}"
    columns = f"""
    s."organizationId" AS organization_id,
    e."siteId" AS site_id,
    e."anonId" AS anon_id,
    e."occurredAt" AS occurred_at,
    {value} AS user_id"""
    return _read(
        url, _Query(columns, "TrackingEvent", "e", f"{value} IS NOT NULL"), replace(window, start=None, end=None)
    )


def read_campaigns(url: str | Connections, organization_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The organization's ``Campaign`` rows (with their ad account's platform) and ``Ad`` rows, as the
    ``campaigns`` and ``ads`` frames of :func:`optiq_engine.extract_touchpoints`.

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a pool of its own for
        this call).
    organization_id
        ``Organization.id``.

    Returns
    -------
    campaigns : polars.DataFrame
        ``campaign_id``, ``external_id``, ``platform_code``, ``organization_id``.
    ads : polars.DataFrame
        ``ad_id``, ``campaign_id``, ``external_id``, ``organization_id``.

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
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


def iter_partitions(
    url: str | Connections, window: Window, *, partitions: int
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(touchpoints, conversions) in ``partitions`` slices by a server-side hash of ``anonId``.

    A user's history is never split between slices, so attributing them one by one equals attributing
    everything at once, in about 1/partitions of the memory. Each slice is one query per table (the
    hash predicate cannot use an index, so each slice scans the organization's rows of the window).

    Parameters
    ----------
    url
        A job's :class:`~optiq_engine.io.postgres.Connections`, or a PostgreSQL URL (a pool of its own for
        this call).
    window
        The rows to read.
    partitions
        Number of slices (>= 1; 1: no hash predicate).

    Yields
    ------
    tuple of polars.DataFrame
        ``(touchpoints, conversions)`` of one slice (:func:`read_touchpoints`, :func:`read_conversions`).

    Raises
    ------
    ConfigError
        ``partitions < 1`` (at the first iteration: this is a generator), or a bad URL.
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {partitions}")
    with (
        connections(url) as db,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):  # both reads at once (the driver releases the GIL)
        for i in range(partitions):
            part = None if partitions == 1 else (i, partitions)
            touchpoints = pool.submit(_read, db, _READ_TOUCHPOINTS, window, part)
            conversions = pool.submit(_read, db, _READ_CONVERSIONS, window, part)
            yield touchpoints.result(), conversions.result()
