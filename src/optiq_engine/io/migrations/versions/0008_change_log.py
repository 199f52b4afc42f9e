"""A change log of ``"TrackingEvent"`` and ``"TouchPoint"``, filled by triggers: what incremental runs read.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 01:00:00

Incremental runs found the users to recompute by ``createdAt`` past the last run's watermark: a row
inserted with an old ``createdAt`` (a back-dated import), an ``occurredAt`` or ``anonId`` updated in place
and a deleted row were never seen, so an incremental run could differ from a full run. Here every insert,
update and delete of either table (statement triggers with transition tables: one ``INSERT ... SELECT``
per statement, whatever its size) adds one row per affected row version to ``"EngineChange"``:

- ``organizationId``, ``siteId``, ``anonId``, ``occurredAt`` of the row; an update logs the old and the new
  version (both users, both instants);
- ``xid``: the writing transaction (``pg_current_xact_id()``, as a bigint), and ``id``, a sequence.

A run records the snapshot it read the log in (``pg_current_snapshot()``, in ``"EngineRun".summary``); the
next incremental run reads the changes of transactions not visible in that snapshot (``xid`` at or after
its ``xmin``: the ``("organizationId", xid)`` index), so a transaction that commits late is read by the
next run, whatever ids or timestamps its rows carry. ``TRUNCATE`` logs one row with a null ``anonId`` (and
organization): the next run of every organization is a full one. Rows the engine writes itself
(extracted touchpoints: ``tp_`` + 32 hex digits) are not logged. The triggers' function runs as its owner
(``SECURITY DEFINER``), so a role that may write the two tables need not be granted the log.

The log is pruned by the runs (changes every scope of the organization has read). The downgrade drops the
triggers, the function and the log without asking for ``--force`` (the log is derived: the upgrade adds a
change tied to no organization, so the first run of every organization after it is a full one).
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

TABLES: tuple[str, ...] = ("TrackingEvent", "TouchPoint")
#: Ids of the engine's own touchpoints (optiq_engine.io.postgres.ENGINE_TOUCHPOINT_PATTERN).
_ENGINE_IDS = "^tp_[0-9a-f]{32}$"
_FUNCTION = "optiq_log_change"


def _log(rows: str) -> str:
    return f"""INSERT INTO "EngineChange" ("organizationId", "siteId", "anonId", "occurredAt", "table")
      SELECT s."organizationId", r."siteId", r."anonId", r."occurredAt", TG_TABLE_NAME FROM {rows} r
      LEFT JOIN "TrackingSite" s ON s.id = r."siteId"
      WHERE TG_TABLE_NAME <> 'TouchPoint' OR r.id !~ '{_ENGINE_IDS}';"""


def upgrade() -> None:
    # xid: the 64-bit transaction id (xid8) as a bigint, which every client and reflection knows.
    op.execute(
        """CREATE TABLE "EngineChange" (
             id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT "EngineChange_pkey" PRIMARY KEY,
             xid bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
             "organizationId" text,
             "siteId" text,
             "anonId" text,
             "occurredAt" timestamp(6) with time zone,
             "table" text NOT NULL)"""
    )
    op.execute('CREATE INDEX "EngineChange_organizationId_xid_idx" ON "EngineChange" ("organizationId", xid)')
    op.execute(
        f"""CREATE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        SET search_path FROM CURRENT AS $$
        BEGIN
          IF TG_OP = 'TRUNCATE' THEN
            INSERT INTO "EngineChange" ("table") VALUES (TG_TABLE_NAME);
            RETURN NULL;
          END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN
            {_log("new_rows")}
          END IF;
          IF TG_OP IN ('UPDATE', 'DELETE') THEN
            {_log("old_rows")}
          END IF;
          RETURN NULL;
        END $$"""
    )
    # A change tied to no organization: the next run of every organization is a full one. Runs recorded
    # before (a database downgraded below 0008 and upgraded again) could otherwise miss what was not logged.
    op.execute("""INSERT INTO "EngineChange" ("table") VALUES ('migration 0008')""")
    for table in TABLES:
        # One event per trigger: Postgres allows transition tables only on single-event triggers.
        op.execute(
            f'CREATE TRIGGER "{table}_change_insert" AFTER INSERT ON "{table}" REFERENCING NEW TABLE AS new_rows '
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()"
        )
        op.execute(
            f'CREATE TRIGGER "{table}_change_update" AFTER UPDATE ON "{table}" '
            f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()"
        )
        op.execute(
            f'CREATE TRIGGER "{table}_change_delete" AFTER DELETE ON "{table}" REFERENCING OLD TABLE AS old_rows '
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()"
        )
        op.execute(
            f'CREATE TRIGGER "{table}_change_truncate" AFTER TRUNCATE ON "{table}" '
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()"
        )


def downgrade() -> None:
    # IF EXISTS: a database stamped at this revision (made by the platform) may lack them.
    for table in TABLES:
        for event in ("insert", "update", "delete", "truncate"):
            op.execute(f'DROP TRIGGER IF EXISTS "{table}_change_{event}" ON "{table}"')
    op.execute(f"DROP FUNCTION IF EXISTS {_FUNCTION}()")
    op.execute('DROP TABLE IF EXISTS "EngineChange"')
