"""BRIN indexes on ``"TrackingEvent"."createdAt"`` and ``"TouchPoint"."createdAt"``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:00:00

An incremental ``optiq run`` finds the users with events created since the last run's watermark; without an
index on ``createdAt`` that is a scan of both tables (8 GB at 10M touchpoints). Rows arrive in
``createdAt`` order, so a block-range index (a few hundred kB per 10M rows, next to nothing to maintain on
insert) narrows the scan to the newest pages. The build is one scan of each table inside the migration's
transaction, during which writes to it wait (seconds at 10M rows): on a large live database, build them
first by hand with ``CREATE INDEX CONCURRENTLY`` and the same names, which this revision then keeps.
"""

from __future__ import annotations

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

TABLES: tuple[str, ...] = ("TrackingEvent", "TouchPoint")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f'CREATE INDEX IF NOT EXISTS "{table}_createdAt_idx" ON "{table}" USING brin ("createdAt")')


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"{table}_createdAt_idx", table_name=table)
