"""The HTTP API of the service tests (the ``api`` fixtures of ``tests/service/test_service_api.py`` and
``tests/cli/test_cli_first_hour.py``): the data set of :mod:`tests.support.service_data` on a database of
its own, members of two organizations with an API key each, and a test client of the application."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from optiq_engine.io import db
from optiq_engine.service import keys
from optiq_engine.service.api import create_app
from tests.support import service_data as sd
from tests.support.pg import fresh_database


@contextmanager
def http_api(postgres_url: str) -> Iterator[dict]:
    """The data set of the metrics tests, members of orgA (admin, viewer) and orgB (admin), a key each: the
    test client, the application, the data set, the database URL, an engine and each member's headers."""
    ds = sd.build()
    with fresh_database(postgres_url, upgraded=True) as url:
        sd.insert(url, ds)
        engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
        tokens = {}
        with engine.begin() as conn:
            for user, org, role in (
                ("ua", "orgA", "ADMIN"),
                ("uv", "orgA", "VIEWER"),
                ("ub", "orgB", "OWNER"),
                ("ux", "orgA", "MEMBER"),
            ):
                conn.execute(
                    text('INSERT INTO "User" (id, email) VALUES (:u, :e)'), {"u": user, "e": f"{user}@example.com"}
                )
                conn.execute(
                    text(
                        'INSERT INTO "Membership" (id, "userId", "organizationId", role) VALUES (:i, :u, :o, CAST(:r AS "MembershipRole"))'
                    ),
                    {"i": f"m_{user}", "u": user, "o": org, "r": role},
                )
                tokens[user] = keys.create_api_key(conn, organization_id=org, user_id=user)[1]
            key_x = tokens["ux"].split("_")[1]
            keys.revoke_api_key(conn, key_x, organization_id="orgA")
        app_engine = create_engine(db.normalise_url(url))
        app = create_app(engine=app_engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield {
                "client": client,
                "app": app,
                "ds": ds,
                "url": url,
                "engine": engine,
                "h": {u: {"Authorization": f"Bearer {t}"} for u, t in tokens.items()},
            }
        app_engine.dispose()
        engine.dispose()
