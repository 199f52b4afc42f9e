"""Row-level security on the tables the HTTP API reads, and the ``optiq_service`` role it acts as.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 00:00:00

Defense in depth for tenancy (the schema document: "Row-Level Security: all queries filtered by
organizationId"): the service already filters every query by organization; with these policies a query
that forgot to cannot read another organization's rows either. A policy compares the row's organization
with the transaction setting ``optiq.organization_id`` (empty: no row at all):

- tables with an ``"organizationId"`` column: that column; ``"Organization"``: its ``id``;
- ``"TrackingEvent"`` and ``"TouchPoint"``: their site's organization (the organization's sites are read
  once per statement);
- ``"AttributionLink"``: visible when its conversion event is (the event's own policy decides);
- ``"ApiKey"`` and ``"Membership"`` also show, for reading only, the one key named by
  ``optiq.api_key_id`` and its membership: what authenticating a request needs.

The tenant policies bind the members of ``optiq_service`` (the service's role, and the login roles it
is granted to). Every other role keeps seeing every row through a second, permissive policy
(``optiq_others``: the current role is not a member of ``optiq_service``, evaluated once per statement):
the batch job and the platform may run as non-owner roles with plain grants, and nothing changes for them.
The tables' owner, superusers and ``BYPASSRLS`` roles bypass row-level security anyway (enabled, not
forced).

The role ``optiq_service`` (``NOLOGIN``, not a superuser, no ``BYPASSRLS``) is created when the runner may
create roles (a superuser, or ``CREATEROLE``; a non-superuser creator is made a member so that it can
``SET ROLE`` to it); otherwise a notice says so and the grants wait for the role to exist (create it, then
run this revision again: downgrade to 0006 and upgrade). It gets ``SELECT`` on the tables the service
reads and ``INSERT``/``UPDATE`` on the alert tables it writes, nothing else. Roles belong to the server, not
the database: the downgrade revokes this database's grants and drops the policies, and keeps the role.

Plans: under row-level security Postgres evaluates a query's own conditions before a table's policy, or
uses them in an index, only when their functions are ``LEAKPROOF``. Text, integer and date comparisons are;
enum equality (``enum_eq``, behind ``model = 'LINEAR'``) is not, although it only compares two OIDs and
can neither fail nor reveal anything. Without it the summaries' indexes lose their model column (a 90-day
report went from 1 ms to 30 ms of execution) and the link policy runs for the links of every model. When
run by a superuser, this revision marks ``enum_eq`` ``LEAKPROOF`` in this database (the downgrade undoes
it); otherwise a notice says what a superuser may run.
"""

from __future__ import annotations

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ROLE = "optiq_service"
_ORG = "current_setting('optiq.organization_id', true)"
_KEY = "current_setting('optiq.api_key_id', true)"
#: True for a role outside optiq_service (an uncorrelated subquery: one evaluation per statement; false for
#: nobody when the role does not exist, where pg_has_role would raise).
_NOT_SERVICE = (
    f"NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = '{ROLE}' AND pg_has_role(current_user, r.oid, 'MEMBER'))"
)
#: Tables with an "organizationId" column the service reads.
ORG_TABLES: tuple[str, ...] = (
    "AdAccount",
    "Campaign",
    "Ad",
    "DailyAdAccountMetric",
    "DailyCampaignMetric",
    "DailyAdMetric",
    "TrackingSite",
    "AlertRule",
    "AlertEvent",
    "InAppNotification",
    "Membership",
    "ApiKey",
    "EngineCreditDaily",
    "EngineCreditState",
    "EngineSpendDaily",
)
_SITES = f'ARRAY(SELECT s.id FROM "TrackingSite" s WHERE s."organizationId" = {_ORG})'
#: Tables keyed through a parent: table -> the USING expression.
CHILD_POLICIES: dict[str, str] = {
    "Organization": f"id = {_ORG}",
    "TrackingEvent": f'"siteId" = ANY ({_SITES})',
    "TouchPoint": f'"siteId" = ANY ({_SITES})',
    "AttributionLink": 'EXISTS (SELECT 1 FROM "TrackingEvent" e WHERE e.id = "AttributionLink"."conversionId")',
}
#: Read-only lookups of the presented API key before the request's organization is known.
KEY_POLICIES: dict[str, str] = {
    "ApiKey": f"id = {_KEY}",
    "Membership": (
        f'EXISTS (SELECT 1 FROM "ApiKey" k WHERE k.id = {_KEY} '
        'AND k."userId" = "Membership"."userId" AND k."organizationId" = "Membership"."organizationId")'
    ),
}
#: What the service may do: reads everywhere it looks, writes only to the alert tables.
WRITES: tuple[str, ...] = ("AlertRule", "AlertEvent", "InAppNotification")
READS: tuple[str, ...] = (*ORG_TABLES, *CHILD_POLICIES, "Platform")

_CREATE_ROLE = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
    IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
      BEGIN
        CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- made at the same moment by another database's migration
      END;
      IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT {ROLE} TO %I', current_user);
      END IF;
    ELSE
      RAISE NOTICE 'role {ROLE} not created (% may not create roles): create it, then run migration 0007 again', current_user;
    END IF;
  END IF;
END $$"""


def _if_role(statements: list[str], *, usage: bool = True) -> str:
    """A DO block running ``statements`` (SQL) when the role exists, after granting USAGE on the schema (best effort)."""
    body = "\n".join(f"    EXECUTE {_literal(s)};" for s in statements)
    grant = (
        f"    BEGIN\n      EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ROLE}', current_schema());\n"
        "    EXCEPTION WHEN insufficient_privilege THEN\n"
        "      RAISE NOTICE 'USAGE on schema % not granted to {ROLE}: grant it as its owner', current_schema();\n    END;\n"
        if usage
        else ""
    )
    return f"DO $$\nBEGIN\n  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN\n{grant}{body}\n  END IF;\nEND $$"


def _literal(sql: str) -> str:
    return "'" + sql.replace("'", "''") + "'"


def _tables(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f'"{t}"' for t in names)


_LEAKPROOF_ENUM_EQ = """
DO $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    ALTER FUNCTION pg_catalog.enum_eq(anyenum, anyenum) {how};
  ELSE
    RAISE NOTICE 'enum_eq not made LEAKPROOF (needs a superuser): reports under row-level security use fewer indexes; '
      'a superuser may run ALTER FUNCTION pg_catalog.enum_eq(anyenum, anyenum) LEAKPROOF';
  END IF;
END $$"""


def upgrade() -> None:
    for table in ORG_TABLES:
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(
            f'CREATE POLICY optiq_tenant ON "{table}" USING ("organizationId" = {_ORG}) WITH CHECK ("organizationId" = {_ORG})'
        )
    for table, using in CHILD_POLICIES.items():
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY optiq_tenant ON "{table}" USING ({using}) WITH CHECK ({using})')
    for table, using in KEY_POLICIES.items():
        op.execute(f'CREATE POLICY optiq_key_lookup ON "{table}" FOR SELECT USING ({using})')
    for table in (*ORG_TABLES, *CHILD_POLICIES):
        op.execute(f'CREATE POLICY optiq_others ON "{table}" USING ({_NOT_SERVICE}) WITH CHECK ({_NOT_SERVICE})')
    op.execute(_LEAKPROOF_ENUM_EQ.format(how="LEAKPROOF"))
    op.execute(_CREATE_ROLE)
    op.execute(
        _if_role(
            [f"GRANT SELECT ON {_tables(READS)} TO {ROLE}", f"GRANT INSERT, UPDATE ON {_tables(WRITES)} TO {ROLE}"]
        )
    )


def downgrade() -> None:
    op.execute(_LEAKPROOF_ENUM_EQ.format(how="NOT LEAKPROOF"))
    op.execute(_if_role([f"REVOKE ALL ON {_tables(READS)} FROM {ROLE}"], usage=False))
    for table in KEY_POLICIES:
        op.execute(f'DROP POLICY IF EXISTS optiq_key_lookup ON "{table}"')
    for table in (*ORG_TABLES, *CHILD_POLICIES):
        op.execute(f'DROP POLICY IF EXISTS optiq_others ON "{table}"')
        op.execute(f'DROP POLICY IF EXISTS optiq_tenant ON "{table}"')
        op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
