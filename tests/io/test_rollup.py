"""The service's daily summaries (``optiq_engine.io.rollup``, migration 0004) against a real Postgres.

Buckets tile any period; the spend summary follows every write to the daily metric tables (triggers) and
equals an independent Polars recomputation; reports from the credit summary equal the reports from the
links for every grain, filter, comparison and currency conversion (and Postgres skips the links then); the
engine's deltas equal a rebuild after random rewrites; a summary made inconsistent behind the engine's back
is rebuilt; the batch job keeps it right through full, rerun and incremental runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.batch import run_batch, summarize
from optiq_engine.channels import ChannelRule, ChannelRules
from optiq_engine.cli import app
from optiq_engine.io import db, postgres, rollup, seed
from optiq_engine.service.errors import CurrencyError
from optiq_engine.service.metrics import (
    CurrencyConversion,
    MetricsQuery,
    _metrics_sql,
    is_summarized,
    read_credit,
    read_metrics,
)
from tests.support import service_data as sd
from tests.support.pg import fresh_database
from tests.support.pg_data import retag

EPOCH = date(1970, 1, 1)


# --- buckets ---------------------------------------------------------------------------------------------
@given(
    start=st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 1, 1)),
    length=st.integers(min_value=1, max_value=1000),
    spans=st.sampled_from([rollup.SPANS, (64, 8, 1), (1,), (8, 1), (64, 1)]),
)
def test_buckets_tile_the_period_with_aligned_buckets(start: date, length: int, spans: tuple[int, ...]) -> None:
    end = start + timedelta(days=length - 1)
    tiles = rollup.buckets(start, end, spans)
    covered = []
    for span, days in tiles.items():
        assert span in spans
        for day in days:
            assert (day - EPOCH).days % span == 0  # aligned, so the stored bucket is this one
            covered += [day + timedelta(days=i) for i in range(span)]
    assert sorted(covered) == [start + timedelta(days=i) for i in range(length)]  # every day once, none outside
    if spans == (64, 8, 1):
        assert len(tiles[1]) <= 14 and len(tiles[8]) <= 14 and len(tiles[64]) <= length // 64
    if spans == rollup.SPANS:
        assert all(len(tiles[s]) <= 2 for s in spans if s < 64) and len(tiles[64]) <= length // 64
    # No tiling by aligned buckets of these spans has fewer buckets (dynamic programming over the days).
    fewest = [0] + [length + 1] * length  # fewest[i]: buckets tiling the first i days
    for i in range(length):
        for span in spans:
            if (start + timedelta(days=i) - EPOCH).days % span == 0 and i + span <= length:
                fewest[i + span] = min(fewest[i + span], fewest[i] + 1)
    assert sum(len(days) for days in tiles.values()) == fewest[length]


# --- helpers ---------------------------------------------------------------------------------------------
def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_NUMERIC = {"conversions", "revenueMicros", "spendMicros"}


def _rows(cur: Any, table: str, org: str | None = None) -> list[tuple]:
    """The table's rows, sorted; numeric columns as Decimals without trailing zeros (any driver)."""
    cur.execute(f'SELECT * FROM "{table}" LIMIT 0')
    names = [d[0] for d in cur.description]
    cur.fetchall()
    cols = ", ".join(f'trim_scale("{n}")::text' if n in _NUMERIC else f'"{n}"' for n in names)
    where = "" if org is None else f""" WHERE "organizationId" = '{org}'"""
    cur.execute(f'SELECT {cols} FROM "{table}"{where}')
    numeric = [n in _NUMERIC for n in names]
    rows = [
        tuple(Decimal(v) if is_num else v for v, is_num in zip(row, numeric, strict=True)) for row in cur.fetchall()
    ]
    return sorted(rows, key=repr)


def _rebuilt_credit(cur: Any, org: str) -> list[tuple]:
    """What a rebuild from scratch would store, without keeping it (``cur`` inside a transaction)."""
    cur.execute("SAVEPOINT t")
    rollup.rebuild_credit(cur, org, repair=True)
    rows = _rows(cur, "EngineCreditDaily", org)
    cur.execute("ROLLBACK TO SAVEPOINT t")
    return rows


def _bucket(day: date, span: int) -> date:
    return day - timedelta(days=(day - EPOCH).days % span)


# --- spend -----------------------------------------------------------------------------------------------
@pytest.fixture()
def service_db(postgres_url: str) -> Iterator[tuple[sd.Dataset, str]]:
    ds = sd.build()
    with fresh_database(postgres_url, upgraded=True) as url:
        sd.insert(url, ds)
        yield ds, url


def _spend_expected(
    conn: psycopg.Connection, levels: tuple[int, ...] = rollup.SPEND_LEVELS, spans: tuple[int, ...] = rollup.SPANS
) -> list[tuple]:
    """EngineSpendDaily recomputed in Polars from the summarized daily metric tables (no shared SQL)."""
    out = []
    for level in levels:
        table, scope = rollup.SPEND_TABLES[level]
        cur = conn.execute(
            f'SELECT "organizationId", "{scope}", date, impressions, clicks, "spendMicros" FROM "{table}"'
        )
        frame = pl.DataFrame(cur.fetchall(), schema=["org", "scope", "day", "imp", "clk", "spend"], orient="row")
        for span in spans:
            if frame.is_empty():
                continue
            agg = (
                frame.with_columns(pl.col("day").map_elements(lambda d, s=span: _bucket(d, s), return_dtype=pl.Date))
                .group_by("org", "scope", "day")
                .agg(pl.len(), pl.col("imp").sum(), pl.col("clk").sum(), pl.col("spend").sum())
            )
            out += [(o, level, span, d, s, n, i, c, Decimal(sp)) for o, s, d, n, i, c, sp in agg.iter_rows()]
    return sorted(out, key=repr)


def _spend_stored(conn: psycopg.Connection) -> list[tuple]:
    return _rows(conn.cursor(), "EngineSpendDaily")


@pytest.mark.postgres
def test_spend_summary_follows_inserts_updates_deletes_and_truncate(service_db) -> None:
    _, url = service_db
    with psycopg.connect(_dsn(url), autocommit=True) as conn:
        assert _spend_stored(conn) == _spend_expected(conn) != []
        steps = [
            # a new day for one ad, a spend correction, a row moved to another ad and day, rows deleted
            """INSERT INTO "DailyAdMetric" (id, "organizationId", "adId", date, impressions, clicks, "spendMicros")
               VALUES ('new1', 'orgA', 'accA1_c0_ad0', '2024-05-02', 10, 2, 9000000)""",
            """UPDATE "DailyAdMetric" SET "spendMicros" = "spendMicros" * 2 + 1 WHERE date = '2024-03-05'""",
            """UPDATE "DailyAdMetric" SET "adId" = 'accA2_c0_ad1', date = '2024-04-30' WHERE id = 'm_accA1_c0_ad0_3'""",
            """DELETE FROM "DailyCampaignMetric" WHERE date BETWEEN '2024-03-03' AND '2024-03-09'""",
            """UPDATE "DailyAdAccountMetric" SET clicks = clicks WHERE true""",  # no change: nothing to write
            """DELETE FROM "DailyAdMetric" WHERE id = 'new1'""",
        ]
        for statement in steps:
            conn.execute(statement)
            assert _spend_stored(conn) == _spend_expected(conn), statement
        conn.execute('TRUNCATE "DailyAdAccountMetric"')
        assert _spend_stored(conn) == _spend_expected(conn)
        assert not [r for r in _spend_stored(conn) if r[1] == 1]
        # Rebuilding changes nothing; deleting an organization takes its metrics and summary rows with it.
        stored = _spend_stored(conn)
        rollup.rebuild_spend(conn.cursor())
        assert _spend_stored(conn) == stored
        conn.execute("""DELETE FROM "Organization" WHERE id = 'orgB'""")
        assert _spend_stored(conn) == _spend_expected(conn)
        assert {r[0] for r in _spend_stored(conn)} == {"orgA"}


@pytest.mark.postgres
def test_migration_0005_resummarizes_in_dyadic_buckets_and_back(service_db) -> None:
    _, url = service_db
    with psycopg.connect(_dsn(url), autocommit=True) as conn:
        with conn.transaction():
            rollup.rebuild_credit(conn.cursor(), "orgA")
        credit, spend = _rows(conn.cursor(), "EngineCreditDaily"), _spend_stored(conn)
        assert {r[3] for r in credit} == set(rollup.SPANS) and spend == _spend_expected(conn)
        db.downgrade(url, "0004")  # 0004: spend of all three levels in 8- and 64-day buckets; credit 1, 8, 64
        assert _spend_stored(conn) == _spend_expected(conn, (1, 2, 3), (64, 8))
        assert _rows(conn.cursor(), "EngineCreditDaily") == [r for r in credit if r[3] in (1, 8, 64)]
        db.upgrade(url)
        assert _rows(conn.cursor(), "EngineCreditDaily") == credit and _spend_stored(conn) == spend
        conn.execute("""UPDATE "DailyAdMetric" SET clicks = clicks + 1""")  # ads are no longer summarized
        assert _spend_stored(conn) == spend


# --- reports from the credit summary == reports from the links ------------------------------------------
_LONG = (date(2024, 2, 1), date(2024, 4, 30))  # holds a 64-day bucket (2024-02-23 .. 2024-04-26)
_USD = CurrencyConversion("USD", {"EUR": "1.0825"})
_RULES = ChannelRules((ChannelRule("paid", click_id="gclid"), ChannelRule("email", medium="email")))


def _queries() -> list[MetricsQuery]:
    out = []
    for org in ("orgA", "orgB"):
        for grain in ("organization", "platform", "ad_account", "campaign", "ad", "channel"):
            for start, end in ((date(2024, 3, 8), date(2024, 3, 14)), (date(2024, 2, 27), date(2024, 3, 16)), _LONG):
                for daily, compare in ((False, True), (True, False), (True, True)):
                    out.append(MetricsQuery(org, start, end, model="LINEAR", grain=grain, daily=daily, compare=compare))  # type: ignore[arg-type]
    filters: list[dict[str, Any]] = [
        {"grain": "ad_account", "campaign_id": "accA1_c0"},
        {"grain": "campaign", "ad_id": "accA2_c0_ad1"},
        {"grain": "channel", "platform": "GOOGLE_ADS"},
        {"grain": "channel", "ad_account_id": "accA2"},
        {"grain": "platform", "ad_account_id": "accA3"},
        {"grain": "organization", "conversion": _USD},
        {"grain": "channel", "conversion": _USD, "daily": True},
        {"grain": "channel", "channel_rules": _RULES},
        {"grain": "ad", "model": "LAST_TOUCH", "platform": "META"},
        {"grain": "campaign", "conversion": _USD},
        {"grain": "ad_account", "conversion": CurrencyConversion("USD")},
    ]
    return out + [MetricsQuery("orgA", *_LONG, **f) for f in filters]


def _report(query: MetricsQuery, conn: Any) -> pl.DataFrame | str:
    try:
        return read_metrics(query, conn)
    except CurrencyError as exc:
        return f"CurrencyError: {exc}"


@pytest.mark.postgres
def test_reports_from_the_summary_equal_reports_from_the_links(service_db) -> None:
    ds, url = service_db
    engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
    queries = _queries()
    credit_args = [
        dict(organization_id=o, start=s, end=e, grain=g)
        for o in ("orgA", "orgB")
        for s, e in ((date(2024, 3, 8), date(2024, 3, 14)), _LONG)
        for g in ("channel", "campaign", "platform")
    ]
    with engine.connect() as conn:
        from_links = [_report(q, conn) for q in queries]
        credit_from_links = [read_credit(conn, **a) for a in credit_args]  # type: ignore[arg-type]
    assert sum(isinstance(r, str) for r in from_links) >= 3  # mixed currencies refused on both paths
    for org in ("orgA", "orgB"):  # as for a database whose links the platform wrote
        result = CliRunner().invoke(app, ["db", "summarize", "--database-url", url, "--org", org])
        assert result.exit_code == 0 and f"summarized {org}" in result.output, result.output
    assert CliRunner().invoke(app, ["db", "summarize", "--database-url", url, "--org", "nope"]).exit_code == 2
    with engine.connect() as conn:
        for query, expected in zip(queries, from_links, strict=True):
            got = _report(query, conn)
            if isinstance(expected, str):
                assert got == expected, query
            else:
                assert isinstance(got, pl.DataFrame), query
                assert_frame_equal(got, expected, check_exact=True), query
        for args, expected in zip(credit_args, credit_from_links, strict=True):
            assert_frame_equal(read_credit(conn, **args), expected, check_exact=True)  # type: ignore[arg-type]
        # The summary path never touches the links, unless custom rules need them.
        assert is_summarized(conn, "orgA") and not is_summarized(conn, "orgZ")
        for query, uses_links in (
            (queries[0], False),
            (MetricsQuery("orgA", *_LONG, grain="channel", channel_rules=_RULES), True),
        ):
            sql, params = _metrics_sql(query, summarized=True)
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql), params))
            assert ('"AttributionLink"' in plan or "attributionlink" in plan.lower()) == uses_links, plan
            assert ('"EngineCreditDaily"' in plan or "enginecreditdaily" in plan.lower()) != uses_links, plan
    # The summary's reports also equal the Polars recomputation of the links (not only the SQL path).
    with engine.connect() as conn:
        for grain in ("ad", "campaign", "ad_account", "channel"):
            query = MetricsQuery(
                "orgA", date(2024, 3, 8), date(2024, 3, 14), model="LINEAR", grain=grain, compare=False
            )  # type: ignore[arg-type]
            got = read_metrics(query, conn).rename(
                {"ad_id": "key", "campaign_id": "key", "ad_account_id": "key", "channel": "key"}, strict=False
            )
            expected = sd.reference(
                ds, "orgA", start=query.start, end=query.end, model="LINEAR", grain=grain, level=query.spend_level
            )
            cols = ["key", "spend_micros", "impressions", "clicks", "conversions", "revenue_micros"]
            assert_frame_equal(got.select(cols), expected.select(cols))
    engine.dispose()


# --- credit deltas -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def summarized_db(postgres_url: str) -> Iterator[str]:
    ds = sd.build()
    with fresh_database(postgres_url, upgraded=True) as url:
        sd.insert(url, ds)
        with psycopg.connect(_dsn(url)) as conn, conn.cursor() as cur:
            rollup.rebuild_credit(cur, "orgA")
        yield url


class _RollBack(Exception):
    """Raised to end a test's transaction without committing it (the module's database stays as it was)."""


_CONVERSIONS = [f"orgA_cv{n}" for n in range(60)]
_change = st.tuples(
    st.sampled_from(_CONVERSIONS),
    st.sampled_from(["LINEAR", "LAST_TOUCH"]),
    st.sampled_from(["delete", "reweight", "add", "move"]),
    st.integers(min_value=0, max_value=10**6),
)


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(_change, max_size=12),
    extra_scope=st.lists(st.sampled_from(_CONVERSIONS), max_size=5),
    models=st.sampled_from([["LINEAR"], ["LAST_TOUCH"], ["LINEAR", "LAST_TOUCH"]]),
)
def test_engine_deltas_equal_a_rebuild_after_random_rewrites(summarized_db: str, changes, extra_scope, models) -> None:
    """Rewrites of the links of a scope (deleted, reweighted, added, moved to another touchpoint of the
    organization, possibly in another ad account and time zone) inside ``credit_maintained``."""
    url = summarized_db
    changes = [c for c in changes if c[1] in models]
    scope = pl.Series([c[0] for c in changes] + extra_scope, dtype=pl.String)
    with pytest.raises(_RollBack), postgres.transaction(url) as cur:
        before = _rows(cur, "EngineCreditDaily", "orgA")
        with rollup.credit_maintained(cur, "orgA", scope, models):
            for conversion, model, action, r in changes:
                if action == "delete":
                    cur.execute(
                        f"""DELETE FROM "AttributionLink" WHERE "conversionId" = '{conversion}' AND model = '{model}'"""
                    )
                elif action == "reweight":
                    cur.execute(f"""UPDATE "AttributionLink" SET weight = weight * {r / 1e6}
                                    WHERE "conversionId" = '{conversion}' AND model = '{model}'""")
                else:  # add a link to, or move one to, another touchpoint of orgA
                    cur.execute(f"""SELECT id FROM "TouchPoint" WHERE "siteId" = 'site_orgA' AND id NOT IN (SELECT "touchPointId"
                                    FROM "AttributionLink" WHERE "conversionId" = '{conversion}' AND model = '{model}')
                                    ORDER BY id OFFSET {r % 50} LIMIT 1""")
                    (touchpoint,) = cur.fetchone()
                    if action == "move":
                        cur.execute(f"""UPDATE "AttributionLink" SET "touchPointId" = '{touchpoint}' WHERE id IN (SELECT id
                                        FROM "AttributionLink" WHERE "conversionId" = '{conversion}' AND model = '{model}' LIMIT 1)""")
                    else:
                        cur.execute(f"""INSERT INTO "AttributionLink" (id, "conversionId", "touchPointId", model, weight,
                                        position, "touchPointCount") VALUES ('x_{conversion}_{model}_{touchpoint}',
                                        '{conversion}', '{touchpoint}', '{model}', {r / 1e6}, 1, 1)""")
        after = _rows(cur, "EngineCreditDaily", "orgA")
        assert after == _rebuilt_credit(cur, "orgA")
        if not changes:
            assert after == before
        raise _RollBack


@pytest.mark.postgres
def test_a_summary_made_inconsistent_behind_the_engines_back_is_rebuilt(summarized_db: str, caplog) -> None:
    """A link written by someone else is not in the summary: when the engine later replaces it, the
    subtraction goes negative, which is detected, logged, and repaired by a rebuild in the same transaction."""
    url = summarized_db
    with pytest.raises(_RollBack), postgres.transaction(url) as cur:
        cur.execute("""INSERT INTO "AttributionLink" (id, "conversionId", "touchPointId", model, weight, position,
                       "touchPointCount") VALUES ('behind', 'orgA_cv1', 'orgA_tp0', 'LINEAR', 0.25, 1, 1)""")
        with (
            caplog.at_level(logging.WARNING),
            rollup.credit_maintained(cur, "orgA", pl.Series(["orgA_cv1"]), ["LINEAR"]),
        ):
            cur.execute("""DELETE FROM "AttributionLink" WHERE "conversionId" = 'orgA_cv1' AND model = 'LINEAR'""")
        assert "inconsistent" in caplog.text
        assert _rows(cur, "EngineCreditDaily", "orgA") == _rebuilt_credit(cur, "orgA")
        raise _RollBack


@pytest.mark.postgres
def test_resummarizing_repairs_coarser_levels_that_disagree_with_the_detail(summarized_db: str, caplog) -> None:
    url = summarized_db
    with pytest.raises(_RollBack), postgres.transaction(url) as cur:
        expected = _rebuilt_credit(cur, "orgA")
        cur.execute(
            """UPDATE "EngineCreditDaily" SET links = 0 WHERE "organizationId" = 'orgA' AND level = 2"""
        )  # corrupt
        cur.execute(
            """DELETE FROM "AttributionLink" WHERE "conversionId" = 'orgA_cv5'"""
        )  # and a change behind its back
        expected_after = _rebuilt_credit(cur, "orgA")
        assert expected_after != expected
        with caplog.at_level(logging.WARNING):
            rollup.rebuild_credit(cur, "orgA")  # a delta against the stored detail first: goes negative, then repairs
        assert "inconsistent" in caplog.text
        assert _rows(cur, "EngineCreditDaily", "orgA") == expected_after
        raise _RollBack


@pytest.mark.postgres
def test_write_links_keeps_a_summarized_organization_right(summarized_db: str) -> None:
    url = summarized_db
    links = pl.DataFrame(
        {
            "conversion_id": ["orgA_cv3", "orgA_cv3"],
            "touchpoint_id": ["orgA_tp0", "orgA_tp1"],
            "model": ["LINEAR", "LINEAR"],
            "weight": [0.75, 0.25],
            "position": [1, 2],
            "touchpoint_count": [2, 2],
        }
    )
    counts = postgres.write_links(
        url, links, organization_id="orgA", conversion_ids=pl.Series(["orgA_cv3"]), models=["LINEAR"]
    )
    assert counts.changed > 0
    with psycopg.connect(_dsn(url)) as conn, conn.cursor() as cur:
        assert _rows(cur, "EngineCreditDaily", "orgA") == _rebuilt_credit(cur, "orgA")


# --- the batch job ---------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_batch_runs_keep_the_summary_equal_to_the_links(postgres_url: str) -> None:
    data = retag(oq.synthetic.generate(n_users=250, seed=7), "orgR")
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data)
        run_batch(url, organization_id="orgR", full=True)
        with psycopg.connect(_dsn(url)) as conn, conn.cursor() as cur:
            assert _rows(cur, "EngineCreditDaily") == []  # not summarized: runs pay nothing for it
        summarize(url, "orgR")
        run_batch(url, organization_id="orgR", full=True)  # every conversion in scope: summarized anew
        with psycopg.connect(_dsn(url)) as conn, conn.cursor() as cur:
            first = _rows(cur, "EngineCreditDaily", "orgR")
            assert first and first == _rebuilt_credit(cur, "orgR")
            cur.execute('SELECT xmin::text FROM "EngineCreditDaily"')
            versions = sorted(cur.fetchall())
        rerun = run_batch(url, organization_id="orgR", full=True)
        assert rerun.changed == 0
        site_run = run_batch(url, organization_id="orgR", site_id="site_orgR", full=True)  # a delta over the site
        assert site_run.changed == 0
        with psycopg.connect(_dsn(url)) as conn, conn.cursor() as cur:
            cur.execute('SELECT xmin::text FROM "EngineCreditDaily"')
            assert sorted(cur.fetchall()) == versions  # a rerun rewrites no summary row
        # A user gets a new touchpoint before a conversion: the incremental run moves credit between channels.
        conv = data.conversions.sort("conversion_id").row(0, named=True)
        with psycopg.connect(_dsn(url)) as conn:
            conn.execute(
                'INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt", "utmSource", "utmMedium") '
                "VALUES ('orgR_tp_new', %s, %s, %s, 'newsletter', 'email')",
                (conv["site_id"], conv["anon_id"], conv["occurred_at"] - timedelta(minutes=1)),
            )
        incremental = run_batch(url, organization_id="orgR", overlap=timedelta(0))
        assert incremental.mode == "INCREMENTAL" and incremental.inserted > 0
        with psycopg.connect(_dsn(url)) as conn, conn.cursor() as cur:
            now = _rows(cur, "EngineCreditDaily", "orgR")
            assert now != first and now == _rebuilt_credit(cur, "orgR")
            # Per model, the summary's conversions add up to the links' weights (at the 1e-15 resolution).
            cur.execute(
                """SELECT model::text, sum(round(weight * 1e15)::bigint)::numeric / 1e15 FROM "AttributionLink" l JOIN "TouchPoint" tp ON tp.id = l."touchPointId"
                   WHERE tp."siteId" = 'site_orgR' GROUP BY 1 ORDER BY 1"""
            )
            by_links = cur.fetchall()
            cur.execute(
                """SELECT model::text, sum(conversions) FROM "EngineCreditDaily" WHERE "organizationId" = 'orgR'
                   AND level = 2 AND span = 1 GROUP BY 1 ORDER BY 1"""
            )
            assert cur.fetchall() == by_links
