"""Daily summaries that the service reads instead of millions of links and daily metric rows.

Two engine tables (migrations 0004, 0005) hold sums per organization, day bucket and key; a report adds up a few
buckets per key instead of scanning every ``AttributionLink`` of its period (``docs/service.md``):

- ``"EngineCreditDaily"``: attributed links, conversions (sum of weights) and revenue (sum of weight x
  conversion value) per model, local day of the conversion, and key. ``level`` 0 keeps every key
  (platform, ad account, campaign, channel, currency), 1 platform, ad account and currency, 2 channel and
  currency. Ads are not summarized: per ad and day there are about as many rows as links, so ad-level
  reports read the links. The engine maintains it: every write of links (:func:`credit_maintained`
  around the merges) adds the new links' sums and subtracts the old ones, in the same transaction, exactly
  (weights summed as integers of 1e-15). An organization is summarized once with :func:`rebuild_credit`
  (``optiq db summarize --org``; also what repairs a summary after links were written by something else);
  from then on every write keeps it. Until then (no ``"EngineCreditState"`` row) the service reads its
  links and the engine's writes pay nothing for it.
- ``"EngineSpendDaily"``: impressions, clicks and spend per ``Daily*Metric`` table (``level`` 1 ad
  account, 2 campaign) and scope id, kept by statement triggers on the two tables (whatever writes them),
  filled by the migrations. Ads are not summarized (one row per ad and day already; ad-level reports read
  ``DailyAdMetric``).

Buckets: every day is summed into aligned buckets of 1, 2, 4, ... 64 days (:data:`SPANS`, aligned on
1970-01-01); a period is tiled by the fewest aligned buckets (:func:`buckets`): a 90-day period by 6 on
average and at most 10, so a report reads a few rows per key instead of one per day (or per link).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import polars as pl

from ..channels import channel_sql

__all__ = [
    "SPANS",
    "SPEND_TABLES",
    "FEMTO_WEIGHT",
    "CREDIT_LEVELS",
    "SPEND_LEVELS",
    "buckets",
    "credit_maintained",
    "rebuild_credit",
    "rebuild_spend",
    "rederive_credit_spans",
    "spend_trigger_sql",
    "drop_spend_trigger_sql",
]

log = logging.getLogger(__name__)

#: Bucket lengths in days, largest first (dyadic: each day is in one bucket of each span).
SPANS: tuple[int, ...] = (64, 32, 16, 8, 4, 2, 1)
#: ``EngineCreditDaily.level`` -> the key columns it keeps.
CREDIT_LEVELS: dict[int, tuple[str, ...]] = {
    0: ("platform", "adAccountId", "campaignId", "channel", "currency"),
    1: ("platform", "adAccountId", "currency"),
    2: ("channel", "currency"),
}
#: Spend level (what ``MetricsQuery.spend_level`` reads) -> (daily metric table, its scope column).
SPEND_TABLES: dict[int, tuple[str, str]] = {
    1: ("DailyAdAccountMetric", "adAccountId"),
    2: ("DailyCampaignMetric", "campaignId"),
    3: ("DailyAdMetric", "adId"),
}
#: The levels ``EngineSpendDaily`` summarizes.
SPEND_LEVELS: tuple[int, ...] = (1, 2)
#: SQL: a link's weight (alias ``l``) in units of 1e-15, the resolution at which weights are summed: integer
#: sums are exact (a delta subtracts exactly what it added) and far faster than ``numeric`` conversions.
FEMTO_WEIGHT = "round(l.weight * 1e15)::bigint"
_EPOCH = date(1970, 1, 1)
_KEYS = CREDIT_LEVELS[0]


def buckets(start: date, end: date, spans: Sequence[int] = SPANS) -> dict[int, list[date]]:
    """The aligned buckets (span -> first days) that tile ``start`` .. ``end`` (inclusive) exactly.

    Left to right, each step takes the largest of ``spans`` (which must include 1) whose bucket starts on
    the current day and ends by ``end``: with the dyadic :data:`SPANS`, at most two buckets of each span
    shorter than 64 days plus the 64-day buckets inside.

    Parameters
    ----------
    start, end
        The first and last day of the period (inclusive); ``start > end`` gives no bucket.
    spans
        Bucket lengths in days, each aligned on 1970-01-01 (default :data:`SPANS`); must include 1.

    Returns
    -------
    dict of int to list of datetime.date
        Every span of ``spans`` (largest first) to the first days of its buckets, in order (empty lists
        included).
    """
    spans = sorted(spans, reverse=True)
    out: dict[int, list[date]] = {span: [] for span in spans}
    day = start
    while day <= end:
        ordinal = (day - _EPOCH).days
        span = next(s for s in spans if ordinal % s == 0 and day + timedelta(days=s - 1) <= end)
        out[span].append(day)
        day += timedelta(days=span)
    return out


def _bucket(day: str, span: str) -> str:
    """SQL: the first day of the ``span``-day bucket holding ``day`` (floor division, any sign)."""
    return f"({day} - ((({day} - DATE '1970-01-01') % {span}) + {span}) % {span})"


def _literal(value: Any) -> str:
    from psycopg.sql import Literal

    return Literal(value).as_string(None)


def _inline(sql: str, params: dict[str, Any]) -> str:
    """``sql`` with its ``:name`` binds replaced by quoted literals (``::`` casts untouched)."""
    return re.sub(
        r"(?<![:\w]):(\w+)", lambda m: _literal(params[m.group(1)]) if m.group(1) in params else m.group(0), sql
    )


# --- credit ------------------------------------------------------------------------------------------------
_DELTA = "optiq_credit_delta"
_DETAIL = "optiq_credit_detail"
_SCOPE = "optiq_credit_scope"
_CREDIT_COLUMNS = ("model", "day", *_KEYS)


def _credit_rows(organization_id: str, *, sign: int, scope: str) -> str:
    """SQL: the organization's links in ``scope`` summed per model, local day and key, times ``sign``.

    The same joins and definitions as the service's link-scanning path (``service.metrics``): the day is
    the conversion's in its ad account's time zone (UTC without one), the channel by the default rules.
    Links are first summed per model, 15-minute bin of the conversion time and touchpoint attributes, so
    the resolution, time zone and channel rules run once per group, not per link (time-zone offsets and
    transitions fall on 15-minute boundaries in every zone since 1972, so a bin has one local day).
    """
    params: dict[str, Any] = {}
    channel = _inline(channel_sql(None, params), params)
    org = _literal(organization_id)
    return f"""SELECT tp.model, (tp.bin AT TIME ZONE COALESCE(aa.timezone, 'UTC'))::date AS day,
    COALESCE(p.code::text, tp."platformCode"::text) AS platform, aa.id AS "adAccountId", c.id AS "campaignId",
    {channel} AS channel, aa.currency AS currency,
    {sign} * sum(tp.links) AS links, {sign} * sum(tp.conversions) AS conversions, {sign} * sum(tp.revenue) AS "revenueMicros"
  FROM (
    SELECT l.model, date_bin('15 minutes', e."occurredAt", TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bin,
      tp."platformCode", tp."campaignId", tp."adId", tp."utmSource", tp."utmMedium",
      tp.gclid IS NOT NULL OR NULL AS gclid, tp.fbclid IS NOT NULL OR NULL AS fbclid, tp.ttclid IS NOT NULL OR NULL AS ttclid,
      count(*) AS links, sum({FEMTO_WEIGHT})::numeric / 1e15 AS conversions,
      COALESCE(sum({FEMTO_WEIGHT}::numeric * e."valueMicros"), 0) / 1e15 AS revenue
    FROM "TrackingSite" s
    JOIN "TrackingEvent" e ON e."siteId" = s.id AND e.type = 'CONVERSION'
    JOIN "AttributionLink" l ON l."conversionId" = e.id
    JOIN "TouchPoint" tp ON tp.id = l."touchPointId" AND tp."siteId" = s.id
    WHERE s."organizationId" = {org}{scope}
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
  ) tp
  LEFT JOIN "Ad" ad ON ad.id = tp."adId" AND ad."organizationId" = {org}
  LEFT JOIN "Campaign" c ON c.id = COALESCE(tp."campaignId", ad."campaignId") AND c."organizationId" = {org}
  LEFT JOIN "AdAccount" aa ON aa.id = c."adAccountId" AND aa."organizationId" = {org}
  LEFT JOIN "Platform" p ON p.id = aa."platformId"
  GROUP BY 1, 2, 3, 4, 5, 6, 7"""


def _stored_detail(organization_id: str) -> str:
    """SQL: the summary's own detail rows (level 0, 1-day buckets) of the organization, negated."""
    return f"""SELECT model, day, {", ".join(f'"{c}"' for c in _KEYS)}, -links, -conversions, -"revenueMicros"
  FROM "EngineCreditDaily" WHERE "organizationId" = {_literal(organization_id)} AND level = 0 AND span = 1"""


def _apply_credit(cur: Any, organization_id: str) -> int:
    """Add the staged delta (``optiq_credit_delta``) to ``EngineCreditDaily``; returns rows written.

    The delta is first summed per detail key (rows whose sums cancel drop out), then each level and span
    is added with its own statement (small aggregations, rather than one of levels x spans x detail rows).
    """
    org = _literal(organization_id)
    quoted = ", ".join(f'"{c}"' for c in _CREDIT_COLUMNS)
    nonzero = 'sum(links) <> 0 OR sum(conversions) <> 0 OR sum("revenueMicros") <> 0'
    cur.execute(f"DROP TABLE IF EXISTS {_DETAIL}")
    cur.execute(
        f"""CREATE TEMP TABLE {_DETAIL} ON COMMIT DROP AS SELECT {quoted}, sum(links) AS links,
  sum(conversions) AS conversions, sum("revenueMicros") AS "revenueMicros"
  FROM {_DELTA} GROUP BY {quoted} HAVING {nonzero}"""
    )
    keys = ", ".join(f'"{c}"' for c in _KEYS)
    written = negative = 0
    for level, keep in CREDIT_LEVELS.items():
        cols = ", ".join(f'"{c}"' if c in keep else "NULL::text" for c in _KEYS)
        group = ", ".join(f'"{c}"' for c in keep)
        for span in SPANS:
            cur.execute(
                f"""WITH up AS (
  INSERT INTO "EngineCreditDaily" AS t ("organizationId", model, level, span, day, {keys}, links, conversions, "revenueMicros")
  SELECT {org}, model, {level}, {span}, {_bucket("day", str(span))} AS bucket, {cols},
    sum(links), sum(conversions), sum("revenueMicros")
  FROM {_DETAIL} GROUP BY model, bucket, {group} HAVING {nonzero}
  ORDER BY model, bucket, {group}
  ON CONFLICT ("organizationId", model, level, span, day, {keys}) DO UPDATE SET
    links = t.links + EXCLUDED.links, conversions = t.conversions + EXCLUDED.conversions,
    "revenueMicros" = t."revenueMicros" + EXCLUDED."revenueMicros"
  RETURNING t.links
) SELECT count(*), count(*) FILTER (WHERE links < 0) FROM up"""
            )
            n, bad = cur.fetchone()
            written, negative = written + int(n), negative + int(bad)
    cur.execute(f'DELETE FROM "EngineCreditDaily" WHERE "organizationId" = {org} AND links = 0')
    if negative:
        raise _Inconsistent(f"{negative} summary row(s) went negative")
    return written


class _Inconsistent(Exception):
    """The stored summary did not hold the sums the delta subtracts (links written behind the engine)."""


def _apply_or_repair(cur: Any, organization_id: str) -> int:
    """:func:`_apply_credit` under a savepoint; a summary it finds inconsistent is rewritten from all links."""
    cur.execute("SAVEPOINT optiq_credit")
    try:
        written = _apply_credit(cur, organization_id)
    except _Inconsistent as exc:
        cur.execute("ROLLBACK TO SAVEPOINT optiq_credit")
        log.warning("credit summary of %s was inconsistent (%s): rewritten from all links", organization_id, exc)
        return rebuild_credit(cur, organization_id, repair=True)
    cur.execute("RELEASE SAVEPOINT optiq_credit")
    return written


def _stage_delta(cur: Any) -> None:
    cur.execute(f"DROP TABLE IF EXISTS {_DELTA}")
    cur.execute(
        f"""CREATE TEMP TABLE {_DELTA} (model "AttributionModel", day date, platform text, "adAccountId" text,
  "campaignId" text, channel text, currency text, links bigint, conversions numeric,
  "revenueMicros" numeric) ON COMMIT DROP"""
    )


def _summarized(cur: Any, organization_id: str) -> bool:
    cur.execute(f'SELECT count(*) FROM "EngineCreditState" WHERE "organizationId" = {_literal(organization_id)}')
    return bool(cur.fetchone()[0])


def rebuild_credit(cur: Any, organization_id: str, *, repair: bool = False) -> int:
    """Summarize the organization from all its links (inside the caller's transaction; ``cur`` any DB-API
    cursor) and mark it summarized. Returns the summary rows written.

    The change is computed against the summary's own detail rows, so only rows that differ are written;
    ``repair`` deletes the organization's rows and writes them all anew instead (for a summary whose
    coarser levels may disagree with its detail).

    Parameters
    ----------
    cur
        A DB-API cursor (psycopg or ADBC) in the caller's transaction.
    organization_id
        ``Organization.id``.
    repair
        Delete the organization's summary rows and write them all anew (default False: only the rows that
        differ).

    Returns
    -------
    int
        Summary rows written (inserted or updated, over every level and span).
    """
    org = _literal(organization_id)
    cur.execute("SET LOCAL work_mem = '256MB'")
    _stage_delta(cur)
    if repair:
        cur.execute(f'DELETE FROM "EngineCreditDaily" WHERE "organizationId" = {org}')
    else:
        cur.execute(f"INSERT INTO {_DELTA} {_stored_detail(organization_id)}")
    cur.execute(f"INSERT INTO {_DELTA} {_credit_rows(organization_id, sign=1, scope='')}")
    # Against the stored detail, coarser levels that disagree with it go negative: rewritten (repair).
    written = _apply_credit(cur, organization_id) if repair else _apply_or_repair(cur, organization_id)
    cur.execute(
        f"""INSERT INTO "EngineCreditState" ("organizationId", "builtAt") VALUES ({org}, now())
  ON CONFLICT ("organizationId") DO UPDATE SET "builtAt" = now(), "updatedAt" = now()"""
    )
    return written


@contextmanager
def credit_maintained(
    cur: Any, organization_id: str, conversion_ids: pl.Series, models: Sequence[str], *, rebuild: bool = False
) -> Iterator[None]:
    """Keep ``EngineCreditDaily`` equal to the links while the block rewrites those of ``conversion_ids`` x
    ``models`` (``cur`` an ADBC cursor inside the writing transaction), if the organization is summarized.

    Before the block, the sums of the scope's current links are staged negated; after it, the new links'
    sums are added and the net change applied. With ``rebuild`` (the scope is every conversion of the
    organization, or the block also changes what links resolve to: touchpoints' campaigns and ads), the
    organization is summarized anew after the block instead (one pass over its links; only rows that differ
    are written). A subtraction below zero (links written behind the engine's back) is logged and repaired
    by a full rebuild. Organizations never summarized (``optiq db summarize``) cost nothing here.

    Parameters
    ----------
    cur
        An ADBC cursor in the writing transaction (the scope's ids are copied in with ``adbc_ingest``).
    organization_id
        ``Organization.id``.
    conversion_ids
        The conversions whose links the block rewrites.
    models
        The models whose links the block rewrites.
    rebuild
        Summarize the organization anew after the block instead of applying the scope's change (default
        False).

    Yields
    ------
    None
        Control, once, for the block that rewrites the links (in the same transaction).
    """
    if not _summarized(cur, organization_id):
        yield
        return
    if rebuild:
        yield
        rebuild_credit(cur, organization_id)
        return
    cur.execute("SET LOCAL work_mem = '256MB'")
    cur.execute(f"DROP TABLE IF EXISTS {_SCOPE}")
    cur.execute(f"CREATE TEMP TABLE {_SCOPE} (id text PRIMARY KEY) ON COMMIT DROP")
    ids = pl.DataFrame({"id": conversion_ids.cast(pl.String).unique().drop_nulls()})
    cur.adbc_ingest(_SCOPE, ids.to_arrow(), mode="append", temporary=True)
    in_models = ", ".join(_literal(m) for m in models) or "NULL"
    scope = f' AND l."conversionId" IN (SELECT id FROM {_SCOPE}) AND l.model::text IN ({in_models})'
    _stage_delta(cur)
    cur.execute(f"INSERT INTO {_DELTA} {_credit_rows(organization_id, sign=-1, scope=scope)}")
    yield
    cur.execute(f"INSERT INTO {_DELTA} {_credit_rows(organization_id, sign=1, scope=scope)}")
    _apply_or_repair(cur, organization_id)


# --- spend -------------------------------------------------------------------------------------------------
def _spend_rows(level: int, source: str, spans: Sequence[int]) -> str:
    """SQL: ``source`` rows (a daily metric table or transition table, columns ``n`` = +1/-1 added)
    summed per organization, bucket of each of ``spans`` and scope id, for :func:`spend_trigger_sql` and
    the backfill."""
    scope = SPEND_TABLES[level][1]
    return f"""SELECT d."organizationId", {level} AS level, s.span, {_bucket("d.date", "s.span")} AS bucket,
    d."{scope}" AS "scopeId", sum(d.n) AS days, sum(d.n * d.impressions) AS impressions,
    sum(d.n * d.clicks) AS clicks, sum(d.n * d."spendMicros"::numeric) AS "spendMicros"
  FROM ({source}) d CROSS JOIN (VALUES {", ".join(f"({span})" for span in spans)}) AS s(span)
  WHERE EXISTS (SELECT 1 FROM "Organization" o WHERE o.id = d."organizationId")
  GROUP BY 1, 2, 3, 4, 5
  HAVING sum(d.n) <> 0 OR sum(d.n * d.impressions) <> 0 OR sum(d.n * d.clicks) <> 0 OR sum(d.n * d."spendMicros") <> 0
  ORDER BY 1, 2, 3, 4, 5"""


_SPEND_UPSERT = """INSERT INTO "EngineSpendDaily" AS t ("organizationId", level, span, day, "scopeId", days, impressions, clicks, "spendMicros")
{rows}
ON CONFLICT ("organizationId", level, span, day, "scopeId") DO UPDATE SET days = t.days + EXCLUDED.days,
  impressions = t.impressions + EXCLUDED.impressions, clicks = t.clicks + EXCLUDED.clicks,
  "spendMicros" = t."spendMicros" + EXCLUDED."spendMicros\""""


def _function(level: int) -> str:
    return f"optiq_spend_summary_{SPEND_TABLES[level][0].lower()}"


def spend_trigger_sql(level: int, spans: Sequence[int] = SPANS) -> list[str]:
    """DDL: the trigger function and statement triggers keeping ``EngineSpendDaily`` equal to one daily
    metric table (insert, update, delete: from the transition tables; truncate: the level's rows go).
    ``spans``: what the migration that creates them summarizes (later migrations pass their own).

    Parameters
    ----------
    level
        A key of :data:`SPEND_TABLES` (1, 2 or 3): which daily metric table the triggers watch.
    spans
        Bucket lengths summarized (default :data:`SPANS`).

    Returns
    -------
    list of str
        ``CREATE FUNCTION`` then four ``CREATE TRIGGER`` statements (insert, update, delete, truncate), to
        run in order.
    """
    table, _ = SPEND_TABLES[level]
    fn = _function(level)
    new = "SELECT *, 1 AS n FROM new_rows"
    old = "SELECT *, -1 AS n FROM old_rows"
    body = f"""CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM "EngineSpendDaily" WHERE level = {level};
  ELSIF TG_OP = 'INSERT' THEN
    {_SPEND_UPSERT.format(rows=_spend_rows(level, new, spans))};
  ELSIF TG_OP = 'DELETE' THEN
    {_SPEND_UPSERT.format(rows=_spend_rows(level, old, spans))};
  ELSE
    {_SPEND_UPSERT.format(rows=_spend_rows(level, f"{new} UNION ALL {old}", spans))};
  END IF;
  DELETE FROM "EngineSpendDaily" WHERE days = 0;
  RETURN NULL;
END
$fn$"""
    return [
        body,
        f'CREATE TRIGGER {fn}_insert AFTER INSERT ON "{table}" REFERENCING NEW TABLE AS new_rows '
        f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        f'CREATE TRIGGER {fn}_update AFTER UPDATE ON "{table}" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
        f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        f'CREATE TRIGGER {fn}_delete AFTER DELETE ON "{table}" REFERENCING OLD TABLE AS old_rows '
        f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        f'CREATE TRIGGER {fn}_truncate AFTER TRUNCATE ON "{table}" FOR EACH STATEMENT EXECUTE FUNCTION {fn}()',
    ]


def drop_spend_trigger_sql(level: int) -> list[str]:
    """DDL undoing :func:`spend_trigger_sql`.

    Parameters
    ----------
    level
        A key of :data:`SPEND_TABLES`.

    Returns
    -------
    list of str
        ``DROP TRIGGER IF EXISTS`` x 4, then ``DROP FUNCTION IF EXISTS``.
    """
    table, _ = SPEND_TABLES[level]
    fn = _function(level)
    return [f'DROP TRIGGER IF EXISTS {fn}_{op} ON "{table}"' for op in ("insert", "update", "delete", "truncate")] + [
        f"DROP FUNCTION IF EXISTS {fn}()"
    ]


def rebuild_spend(
    cur: Any, organization_id: str | None = None, *, levels: Sequence[int] = SPEND_LEVELS, spans: Sequence[int] = SPANS
) -> None:
    """Recompute ``EngineSpendDaily`` from the daily metric tables (one organization, or all with None);
    for databases whose triggers were bypassed (``session_replication_role = replica``, a restore).
    ``levels`` and ``spans``: what to summarize (migrations pass theirs).

    Parameters
    ----------
    cur
        A DB-API cursor in the caller's transaction.
    organization_id
        ``Organization.id``; None (default): every organization (the level's rows of every one are deleted
        first).
    levels
        Keys of :data:`SPEND_TABLES` to summarize (default :data:`SPEND_LEVELS`).
    spans
        Bucket lengths (default :data:`SPANS`).
    """
    where = "" if organization_id is None else f' WHERE "organizationId" = {_literal(organization_id)}'
    cur.execute(f'DELETE FROM "EngineSpendDaily"{where}')
    for level in levels:
        table = SPEND_TABLES[level][0]
        cur.execute(_SPEND_UPSERT.format(rows=_spend_rows(level, f'SELECT *, 1 AS n FROM "{table}"{where}', spans)))


def rederive_credit_spans(cur: Any, spans: Sequence[int] = SPANS) -> None:
    """Rewrite every organization's ``EngineCreditDaily`` buckets longer than a day from its 1-day rows, as
    ``spans`` (for migrations that change the spans; the 1-day rows are the summary's detail).

    Parameters
    ----------
    cur
        A DB-API cursor in the migration's transaction.
    spans
        The bucket lengths to derive (default :data:`SPANS`; 1 is skipped: it is the source).
    """
    cur.execute('DELETE FROM "EngineCreditDaily" WHERE span <> 1')
    keys = ", ".join(f'"{c}"' for c in _KEYS)
    for span in (s for s in spans if s != 1):
        cur.execute(
            f"""INSERT INTO "EngineCreditDaily" ("organizationId", model, level, span, day, {keys}, links, conversions, "revenueMicros")
  SELECT "organizationId", model, level, {span}, {_bucket("day", str(span))} AS bucket, {keys},
    sum(links), sum(conversions), sum("revenueMicros")
  FROM "EngineCreditDaily" WHERE span = 1 GROUP BY "organizationId", model, level, bucket, {keys}"""
        )
