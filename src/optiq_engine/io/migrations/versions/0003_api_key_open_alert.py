"""The HTTP API's keys (``"ApiKey"``) and one open alert event per rule (a partial unique index).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:00:00

``"ApiKey"`` was created by the service itself (``CREATE TABLE IF NOT EXISTS``) before this revision; a
database that already has it (same columns) keeps its rows: the table is created only when absent. The
index ``"AlertEvent_alertRuleId_key"`` makes "a rule never has two open (TRIGGERED or ACKNOWLEDGED)
events" a constraint of the database, not only of the service's row locking; creating it fails if a
rule already has two open events (resolve or dismiss one first).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_OPEN = sa.text("status IN ('TRIGGERED', 'ACKNOWLEDGED')")


def upgrade() -> None:
    now = sa.text("CURRENT_TIMESTAMP")
    if op.get_context().as_sql or not sa.inspect(op.get_bind()).has_table("ApiKey"):
        op.create_table(
            "ApiKey",
            sa.Column("id", sa.Text(), nullable=False),
            sa.Column("organizationId", sa.Text(), nullable=False),
            sa.Column("userId", sa.Text(), nullable=False),
            sa.Column("name", sa.Text(), nullable=False),
            sa.Column("keyHash", sa.Text(), nullable=False),
            sa.Column("revokedAt", postgresql.TIMESTAMP(timezone=True), nullable=True),
            sa.Column("createdAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
            sa.Column("updatedAt", postgresql.TIMESTAMP(timezone=True), server_default=now, nullable=False),
            sa.ForeignKeyConstraint(
                ["organizationId"],
                ["Organization.id"],
                name="ApiKey_organizationId_fkey",
                onupdate="CASCADE",
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["userId"],
                ["User.id"],
                name="ApiKey_userId_fkey",
                onupdate="CASCADE",
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name="ApiKey_pkey"),
        )
    # A table the service made before 0003 has the same columns and Postgres' default constraint names
    # (ApiKey_pkey, ApiKey_<column>_fkey), which are the schema's; it may already have the org index.
    op.execute('CREATE INDEX IF NOT EXISTS "ApiKey_organizationId_idx" ON "ApiKey" ("organizationId")')
    op.create_index("ApiKey_userId_idx", "ApiKey", ["userId"])
    op.create_index("AlertEvent_alertRuleId_key", "AlertEvent", ["alertRuleId"], unique=True, postgresql_where=_OPEN)


def downgrade() -> None:
    op.drop_index("AlertEvent_alertRuleId_key", table_name="AlertEvent")
    op.drop_index("ApiKey_userId_idx", table_name="ApiKey")
    op.drop_index("ApiKey_organizationId_idx", table_name="ApiKey")
    op.drop_table("ApiKey")
