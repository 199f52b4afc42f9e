"""Daily summaries in dyadic buckets (1, 2, 4, ... 64 days); ads' spend no longer summarized.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 00:00:00

A 90-day period is tiled by 6 aligned buckets on average (at most 10) instead of about 15 of 1, 8 and 64
days, so a report reads fewer rows per key. ``"EngineSpendDaily"`` now holds single days too (read from
the summary, not the daily tables) and only the ad-account and campaign levels: per ad and day the
summary would be as large as ``DailyAdMetric`` itself, whose bulk loads its trigger slowed down; ad-level
reports read ``DailyAdMetric``. The unique keys of both summaries include the sums, so reports read the
index alone; partial indexes let the maintenance find the rows it zeroed without a scan.
"""

from __future__ import annotations

from alembic import op

from optiq_engine.io.rollup import drop_spend_trigger_sql, rebuild_spend, rederive_credit_spans, spend_trigger_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

LEVELS: tuple[int, ...] = (1, 2)
SPANS: tuple[int, ...] = (64, 32, 16, 8, 4, 2, 1)
# Revision 0004's.
OLD_LEVELS: tuple[int, ...] = (1, 2, 3)
OLD_SPANS: tuple[int, ...] = (64, 8)


class _Executor:
    """Runs the summary module's SQL through Alembic (online, or printed with ``--sql``)."""

    def execute(self, sql: str) -> None:
        op.execute(sql)


def _resummarize(
    drop: tuple[int, ...], levels: tuple[int, ...], spans: tuple[int, ...], credit: tuple[int, ...]
) -> None:
    for level in drop:
        for statement in drop_spend_trigger_sql(level):
            op.execute(statement)
    rebuild_spend(_Executor(), levels=levels, spans=spans)
    for level in levels:
        for statement in spend_trigger_sql(level, spans):
            op.execute(statement)
    rederive_credit_spans(_Executor(), credit)


_CREDIT_KEY = '"organizationId", model, level, span, day, platform, "adAccountId", "campaignId", channel, currency'
_SPEND_KEY = '"organizationId", level, span, day, "scopeId"'


def _keys(include: bool) -> None:
    credit = ' INCLUDE (links, conversions, "revenueMicros")' if include else ""
    spend = ' INCLUDE (days, impressions, clicks, "spendMicros")' if include else ""
    op.execute('DROP INDEX "EngineCreditDaily_key"')
    op.execute(
        f'CREATE UNIQUE INDEX "EngineCreditDaily_key" ON "EngineCreditDaily" ({_CREDIT_KEY}){credit} NULLS NOT DISTINCT'
    )
    op.execute('DROP INDEX "EngineSpendDaily_key"')
    op.execute(f'CREATE UNIQUE INDEX "EngineSpendDaily_key" ON "EngineSpendDaily" ({_SPEND_KEY}){spend}')


def upgrade() -> None:
    _resummarize(OLD_LEVELS, LEVELS, SPANS, SPANS)
    _keys(include=True)
    op.execute('CREATE INDEX "EngineSpendDaily_zero" ON "EngineSpendDaily" (level) WHERE days = 0')
    op.execute('CREATE INDEX "EngineCreditDaily_zero" ON "EngineCreditDaily" ("organizationId") WHERE links = 0')


def downgrade() -> None:
    op.execute('DROP INDEX "EngineCreditDaily_zero"')
    op.execute('DROP INDEX "EngineSpendDaily_zero"')
    _keys(include=False)
    # 0004 kept 1-day credit buckets and read single days of spend from the daily tables.
    _resummarize(LEVELS, OLD_LEVELS, OLD_SPANS, (*OLD_SPANS, 1))
