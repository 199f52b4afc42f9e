"""Daily summaries for the service: credit per model and key, spend per daily metric row's scope.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 00:00:00

``"EngineSpendDaily"`` is filled from the three ``Daily*Metric`` tables here and kept equal to them by
statement triggers (insert, update, delete, truncate). ``"EngineCreditDaily"`` is filled per organization by
the engine's next write of links or by ``optiq db summarize`` (``"EngineCreditState"`` says which
organizations are summarized; the service reads the links of the others). See ``optiq_engine.io.rollup``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from optiq_engine.io.rollup import drop_spend_trigger_sql, rebuild_spend, spend_trigger_sql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

#: What this revision summarizes (0005 changes both): spend of the three daily metric tables, in 8- and
#: 64-day buckets (single days read from the daily tables).
LEVELS: tuple[int, ...] = (1, 2, 3)
SPANS: tuple[int, ...] = (64, 8)


def _org_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["organizationId"],
        ["Organization.id"],
        name=f"{table}_organizationId_fkey",
        onupdate="CASCADE",
        ondelete="CASCADE",
    )


def _bucket() -> list[sa.Column]:
    return [
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("span", sa.SmallInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
    ]


class _Executor:
    """Runs the summary module's SQL through Alembic (online, or printed with ``--sql``)."""

    def execute(self, sql: str) -> None:
        op.execute(sql)


def upgrade() -> None:
    now = sa.text("CURRENT_TIMESTAMP")
    op.create_table(
        "EngineCreditDaily",
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("model", postgresql.ENUM(name="AttributionModel", create_type=False), nullable=False),
        *_bucket(),
        *(
            sa.Column(name, sa.Text(), nullable=True)
            for name in ("platform", "adAccountId", "campaignId", "channel", "currency")
        ),
        sa.Column("links", sa.BigInteger(), nullable=False),
        sa.Column("conversions", sa.Numeric(), nullable=False),
        sa.Column("revenueMicros", sa.Numeric(), nullable=False),
        _org_fk("EngineCreditDaily"),
    )
    op.create_index(
        "EngineCreditDaily_key",
        "EngineCreditDaily",
        [
            "organizationId",
            "model",
            "level",
            "span",
            "day",
            "platform",
            "adAccountId",
            "campaignId",
            "channel",
            "currency",
        ],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "EngineCreditState",
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("builtAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
        sa.Column("createdAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
        sa.Column("updatedAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
        _org_fk("EngineCreditState"),
        sa.PrimaryKeyConstraint("organizationId", name="EngineCreditState_pkey"),
    )
    op.create_table(
        "EngineSpendDaily",
        sa.Column("organizationId", sa.Text(), nullable=False),
        *_bucket(),
        sa.Column("scopeId", sa.Text(), nullable=False),
        sa.Column("days", sa.BigInteger(), nullable=False),
        sa.Column("impressions", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.Column("spendMicros", sa.Numeric(), nullable=False),
        _org_fk("EngineSpendDaily"),
    )
    op.create_index(
        "EngineSpendDaily_key", "EngineSpendDaily", ["organizationId", "level", "span", "day", "scopeId"], unique=True
    )
    rebuild_spend(_Executor(), levels=LEVELS, spans=SPANS)
    for level in LEVELS:
        for statement in spend_trigger_sql(level, SPANS):
            op.execute(statement)


def downgrade() -> None:
    for level in LEVELS:
        for statement in drop_spend_trigger_sql(level):
            op.execute(statement)
    op.drop_table("EngineSpendDaily")
    op.drop_table("EngineCreditState")
    op.drop_table("EngineCreditDaily")
