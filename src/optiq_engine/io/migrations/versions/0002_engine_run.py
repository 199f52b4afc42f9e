"""The engine's run log: one row per batch run, with the watermark incremental runs start from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    now = sa.text("CURRENT_TIMESTAMP")
    op.create_table(
        "EngineRun",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("siteId", sa.Text(), nullable=True),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("startedAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
        sa.Column("finishedAt", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("watermark", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("summary", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("createdAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
        sa.Column("updatedAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="EngineRun_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="EngineRun_pkey"),
    )
    op.create_index(
        "EngineRun_organizationId_status_finishedAt_idx", "EngineRun", ["organizationId", "status", "finishedAt"]
    )


def downgrade() -> None:
    op.drop_index("EngineRun_organizationId_status_finishedAt_idx", table_name="EngineRun")
    op.drop_table("EngineRun")
