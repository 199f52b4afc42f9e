"""Row-level security (migration 0007, ``service.tenancy``): a query that forgets its organization filter,
run the way the service runs queries, sees one organization and nothing of another; the owner (the batch
job) still sees everything; the service refuses to run as a role that bypasses the policies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, pool, text

from optiq_engine.errors import ConfigError
from optiq_engine.io import db
from optiq_engine.service import keys, tenancy
from optiq_engine.service.api import Caller, Conn, create_app
from tests.support import pg
from tests.support import service_data as sd

pytestmark = pytest.mark.postgres

#: Every table under a policy, and how to find a row's organization as the owner sees it.
ORGANIZATION_OF = {
    "Organization": 'SELECT id FROM "Organization" t WHERE t.id = x.id',
    "TrackingEvent": 'SELECT s."organizationId" FROM "TrackingSite" s WHERE s.id = x."siteId"',
    "TouchPoint": 'SELECT s."organizationId" FROM "TrackingSite" s WHERE s.id = x."siteId"',
    "AttributionLink": (
        'SELECT s."organizationId" FROM "TrackingEvent" e JOIN "TrackingSite" s ON s.id = e."siteId" WHERE e.id = x."conversionId"'
    ),
}
ORG_TABLES = (
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


@pytest.fixture(scope="module")
def rls(postgres_url: str) -> Iterator[dict[str, Any]]:
    """The service data set (orgA, orgB) with a member and a key each, and one alert rule each."""
    with pg.fresh_database(postgres_url, upgraded=True) as url:
        sd.insert(url, sd.build())
        owner = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
        tokens = {}
        with owner.begin() as conn:
            for user, org in (("ua", "orgA"), ("ub", "orgB")):
                conn.execute(
                    text('INSERT INTO "User" (id, email) VALUES (:u, :e)'), {"u": user, "e": f"{user}@example.com"}
                )
                conn.execute(
                    text(
                        'INSERT INTO "Membership" (id, "userId", "organizationId", role) VALUES (:i, :u, :o, \'ADMIN\')'
                    ),
                    {"i": f"m_{user}", "u": user, "o": org},
                )
                tokens[org] = keys.create_api_key(conn, organization_id=org, user_id=user)[1]
                conn.execute(
                    text(
                        'INSERT INTO "AlertRule" (id, "organizationId", name, type, config) '
                        "VALUES (:i, :o, 'cap', 'SPEND_THRESHOLD', '{\"threshold\": 1}')"
                    ),
                    {"i": f"rule_{org}", "o": org},
                )
        yield {"url": url, "owner": owner, "tokens": tokens}
        owner.dispose()


def _organizations(owner: Engine, table: str, ids: list[Any]) -> set[str]:
    """The organizations (as the owner sees them) of rows of ``table`` by primary key ``id``."""
    lookup = ORGANIZATION_OF.get(table, f'SELECT "organizationId" FROM "{table}" t WHERE t.id = x.id')
    with owner.connect() as conn:
        rows = conn.execute(text(f'SELECT ({lookup}) FROM "{table}" x WHERE x.id = ANY(:ids)'), {"ids": ids}).scalars()
        return set(rows)


def _count_by_org(owner: Engine, table: str) -> dict[str, int]:
    lookup = ORGANIZATION_OF.get(table, f'SELECT "organizationId" FROM "{table}" t WHERE t.id = x.id')
    with owner.connect() as conn:
        return dict(conn.execute(text(f'SELECT ({lookup}) AS org, count(*) FROM "{table}" x GROUP BY 1')).all())


def test_an_unscoped_query_on_the_service_path_sees_one_organization(rls) -> None:
    owner = rls["owner"]
    service = tenancy.scoped_engine(owner)
    totals = _count_by_org(owner, "AttributionLink")
    assert totals.get("orgA", 0) > 0 and totals.get("orgB", 0) > 0  # both organizations have links
    for org, other in (("orgA", "orgB"), ("orgB", "orgA")):
        with service.begin() as conn:
            tenancy.set_organization(conn, org)
            links = conn.execute(text('SELECT * FROM "AttributionLink"')).mappings().all()  # deliberately no filter
        assert len(links) == totals[org]
        assert _organizations(owner, "AttributionLink", [r["id"] for r in links]) == {org}, other
    # Every table under a policy: rows of the organization only (and all of them).
    for table in ORG_TABLES:
        with owner.connect() as conn:
            expected = conn.execute(text(f'SELECT count(*) FROM "{table}" WHERE "organizationId" = \'orgA\'')).scalar()
        with tenancy.for_organization(service, "orgA").begin() as conn:
            seen = conn.execute(text(f'SELECT "organizationId" FROM "{table}"')).scalars().all()
        assert len(seen) == expected and set(seen) <= {"orgA"}, table
    for table in ORGANIZATION_OF:
        counts = _count_by_org(owner, table)
        with tenancy.for_organization(service, "orgA").begin() as conn:
            ids = conn.execute(text(f'SELECT id FROM "{table}"')).scalars().all()
        assert len(ids) == counts.get("orgA", 0) > 0, table
        assert _organizations(owner, table, ids) == {"orgA"}, table


def test_no_organization_no_rows_and_the_owner_sees_everything(rls) -> None:
    owner = rls["owner"]
    with tenancy.scoped_engine(owner).begin() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == tenancy.SERVICE_ROLE
        for table in (*ORG_TABLES, *ORGANIZATION_OF):
            assert conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar() == 0, table
        # The key lookup shows the presented key's row and its membership, nothing else.
        key_id = rls["tokens"]["orgB"].split("_")[1]
        tenancy.set_organization(conn, None, api_key_id=key_id)
        assert conn.execute(text('SELECT id FROM "ApiKey"')).scalars().all() == [key_id]
        assert conn.execute(text('SELECT "organizationId" FROM "Membership"')).scalars().all() == ["orgB"]
        assert conn.execute(text('SELECT count(*) FROM "AttributionLink"')).scalar() == 0
    # The owner (the batch job's role) is not subject to the policies (row-level security is not forced).
    with owner.connect() as conn:
        assert set(conn.execute(text('SELECT DISTINCT "organizationId" FROM "AdAccount"')).scalars()) == {
            "orgA",
            "orgB",
        }
    assert set(_count_by_org(owner, "AttributionLink")) == {"orgA", "orgB"}
    # Run by a superuser, the migration made enum equality LEAKPROOF (model = ... stays an index condition).
    with owner.connect() as conn:
        assert conn.execute(text("SELECT proleakproof FROM pg_proc WHERE oid = 'enum_eq'::regproc")).scalar()


def test_writes_outside_the_organization_are_refused(rls) -> None:
    service = tenancy.for_organization(tenancy.scoped_engine(rls["owner"]), "orgA")
    with pytest.raises(Exception, match="row-level security"), service.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO "AlertRule" (id, "organizationId", name, type, config) '
                "VALUES ('x', 'orgB', 'x', 'SPEND_THRESHOLD', '{}')"
            )
        )
    with service.begin() as conn:  # an unscoped update touches the organization's rows only
        changed = conn.execute(text('UPDATE "AlertRule" SET name = name')).rowcount
    assert changed == 1
    with pytest.raises(Exception, match="permission denied"), service.begin() as conn:  # no grant: the batch's tables
        conn.execute(text('DELETE FROM "AttributionLink"'))


def test_the_api_request_path_is_scoped(rls) -> None:
    """A route added to the app that forgets the organization filter still returns the caller's links only."""
    app_engine = create_engine(db.normalise_url(rls["url"]))
    app = create_app(engine=app_engine)

    @app.get("/test/unscoped-links")
    def unscoped(caller: Caller, conn: Conn) -> dict[str, Any]:
        ids = conn.execute(text('SELECT id FROM "AttributionLink"')).scalars().all()
        return {"org": caller.organization_id, "ids": ids, "role": conn.execute(text("SELECT current_user")).scalar()}

    totals = _count_by_org(rls["owner"], "AttributionLink")
    with TestClient(app) as client:
        for org, token in rls["tokens"].items():
            body = client.get("/test/unscoped-links", headers={"Authorization": f"Bearer {token}"}).json()
            assert body["org"] == org and body["role"] == tenancy.SERVICE_ROLE
            assert len(body["ids"]) == totals[org] and _organizations(rls["owner"], "AttributionLink", body["ids"]) == {
                org
            }
        # The service's own routes still work under the policies, including evaluation in its own transactions.
        headers = {"Authorization": f"Bearer {rls['tokens']['orgA']}"}
        assert [r["id"] for r in client.get("/v1/alert-rules", headers=headers).json()] == ["rule_orgA"]
        assert client.get("/v1/alert-rules/rule_orgB", headers=headers).status_code == 404
        evaluated = client.post("/v1/alerts/evaluate", headers=headers)
        assert evaluated.status_code == 200 and {e["rule_id"] for e in evaluated.json()} <= {"rule_orgA"}
    app_engine.dispose()


def test_the_service_refuses_to_bypass_row_level_security(rls) -> None:
    superuser = create_engine(db.normalise_url(rls["url"]), poolclass=pool.NullPool)
    with (
        pytest.raises(ConfigError, match="bypasses row-level security"),
        TestClient(create_app(engine=superuser, role=None)),
    ):
        pass
    with (
        pytest.raises(ConfigError, match="does not exist"),
        TestClient(create_app(engine=superuser, role="optiq_no_such_role")),
    ):
        pass
    superuser.dispose()


def test_a_login_role_in_optiq_service_needs_no_set_role(rls) -> None:
    """The documented deployment: log in as a member of optiq_service (then even RESET ROLE stays under RLS)."""
    name = pg.object_name("svc", record="role")
    with psycopg.connect(pg.admin_dsn(rls["url"]), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN IN ROLE {tenancy.SERVICE_ROLE}")
    try:
        from sqlalchemy.engine import make_url

        login = create_engine(
            make_url(db.normalise_url(rls["url"])).set(username=name, password=None), poolclass=pool.NullPool
        )
        assert tenancy.check_service_role(login, None)["role"] == name
        with tenancy.for_organization(tenancy.scoped_engine(login, role=None), "orgB").begin() as conn:
            conn.execute(text("RESET ROLE"))
            ids = conn.execute(text('SELECT id FROM "AttributionLink"')).scalars().all()
        assert ids and _organizations(rls["owner"], "AttributionLink", ids) == {"orgB"}
        login.dispose()
    finally:
        with psycopg.connect(pg.admin_dsn(rls["url"]), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {name}")
