"""Row-level security for the HTTP API: every transaction of the service runs as a role Postgres filters by organization.

Migration 0007 enables row-level security on the tables the service reads and adds policies keyed by the
transaction setting ``optiq.organization_id``: a row of a table with an ``"organizationId"`` column is
visible (and writable) only when that column equals the setting; ``"Organization"`` by its ``id``;
``"TrackingEvent"`` and ``"TouchPoint"`` through their site's organization, and ``"AttributionLink"``
through its conversion (a link is visible when its conversion event is). With the setting empty, nothing
is visible. The only exception is the API key lookup: ``"ApiKey"`` and ``"Membership"`` also show the
single row (and its membership) of the key id in ``optiq.api_key_id``, which is what authenticating a
request needs before its organization is known.

The tables' owner (who runs ``optiq db upgrade`` and the batch job) bypasses the policies (they are not
``FORCE``\\ d), as do superusers and ``BYPASSRLS`` roles. The service therefore acts as
:data:`SERVICE_ROLE` (``optiq_service``, ``NOLOGIN``, made by the migration when its runner may create
roles, with ``SELECT`` on the tables it reads and ``INSERT``/``UPDATE`` on the alert tables): each of its
transactions starts with ``SET LOCAL ROLE optiq_service`` and the organization settings, all
transaction-local (``set_config(..., true)``), so a pooled connection never carries one request's
organization into the next. Log in as a member of the role (``CREATE ROLE optiq_api LOGIN IN ROLE
optiq_service``) so that even ``RESET ROLE`` cannot leave it; see ``docs/service.md``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event, text

from ..errors import ConfigError

__all__ = [
    "SERVICE_ROLE",
    "ORGANIZATION_SETTING",
    "API_KEY_SETTING",
    "scoped_engine",
    "set_organization",
    "check_service_role",
]

#: The role the service's transactions act as (created by migration 0007).
SERVICE_ROLE = "optiq_service"
#: The transaction setting the policies compare ``"organizationId"`` with.
ORGANIZATION_SETTING = "optiq.organization_id"
#: The transaction setting naming the one API key a request may look up before it is authenticated.
API_KEY_SETTING = "optiq.api_key_id"

_ROLE_OPTION = "optiq_role"
_ORG_OPTION = "optiq_organization_id"
_SCOPE = "SELECT set_config('optiq.organization_id', %(org)s, true), set_config('optiq.api_key_id', '', true)"
_SCOPE_AS = _SCOPE + ", set_config('role', %(role)s, true)"


def _on_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    role = options.get(_ROLE_OPTION)
    params = {"org": options.get(_ORG_OPTION) or "", "role": role}
    conn.exec_driver_sql(_SCOPE_AS if role else _SCOPE, params)


def scoped_engine(engine: Engine, *, role: str | None = SERVICE_ROLE, organization_id: str | None = None) -> Engine:
    """An engine sharing ``engine``'s pool whose every transaction acts as ``role`` and sees ``organization_id``.

    Parameters
    ----------
    engine
        The engine to share the pool of (not changed: the returned engine has its own event listener).
    role
        The role each transaction switches to (``SET LOCAL ROLE``); ``None`` to stay the login role.
    organization_id
        The organization the transaction sees; ``None``: none until :func:`set_organization`.

    Returns
    -------
    Engine
        ``engine.execution_options(...)``; engines derived from it by ``execution_options`` keep the behaviour
        (e.g. ``scoped.execution_options(optiq_organization_id="org")``).
    """
    scoped = engine.execution_options(**{_ROLE_OPTION: role, _ORG_OPTION: organization_id})
    if not event.contains(scoped, "begin", _on_begin):
        event.listen(scoped, "begin", _on_begin)
    return scoped


def for_organization(engine: Engine, organization_id: str) -> Engine:
    """An engine derived from a :func:`scoped_engine` whose transactions see ``organization_id``."""
    return engine.execution_options(**{_ORG_OPTION: organization_id})


def set_organization(connection: Connection, organization_id: str | None, *, api_key_id: str | None = None) -> None:
    """Scope the rest of the connection's transaction to ``organization_id`` (``None``: to nothing), and allow
    the lookup of ``api_key_id`` (``None``: none).

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction (the settings are transaction-local: ``set_config(..., true)``).
    organization_id
        The organization whose rows the row-level security policies show; None: no row.
    api_key_id
        The one ``"ApiKey"`` row (and its membership) the policies show for authentication; None: none.
    """
    connection.exec_driver_sql(
        "SELECT set_config('optiq.organization_id', %(org)s, true), set_config('optiq.api_key_id', %(key)s, true)",
        {"org": organization_id or "", "key": api_key_id or ""},
    )


def check_service_role(engine: Engine, role: str | None = SERVICE_ROLE) -> dict[str, Any]:
    """Check that the service's transactions are subject to row-level security; what was found.

    Parameters
    ----------
    engine
        The service's engine (one connection is opened, its transaction rolled back).
    role
        The role the transactions switch to (default :data:`SERVICE_ROLE`); None: the login role itself.

    Returns
    -------
    dict
        ``role`` (the effective role), ``superuser``, ``bypassrls``, ``owner`` (all False when it returns).

    Raises
    ------
    ConfigError
        If migration 0007 is not applied (no policies), the role does not exist or cannot be switched to,
        or the role the transactions run as bypasses row-level security (a superuser, ``BYPASSRLS``, or the
        owner of the tables).
    """
    with engine.connect() as conn:
        enabled = conn.execute(
            text("SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(:t)"), {"t": '"AttributionLink"'}
        ).scalar()
        if not enabled:
            raise ConfigError(
                'row-level security is not enabled on "AttributionLink": the database is older than migration 0007; '
                "run `optiq db upgrade` first"
            )
        if role is not None:
            exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
            if not exists:
                raise ConfigError(
                    f"the service role {role!r} does not exist: `optiq db upgrade` creates it when run by a role that may "
                    f"create roles; otherwise create it (CREATE ROLE {role} NOLOGIN) and run the upgrade again "
                    "(docs/service.md, 'Row-level security')"
                )
            member = conn.execute(text("SELECT pg_has_role(current_user, :r, 'MEMBER')"), {"r": role}).scalar()
            if not member:
                raise ConfigError(
                    f"the login role cannot act as {role!r}: GRANT {role} TO the login role, or log in as a member of it"
                )
        # Still in the connection's first transaction (rolled back when it closes): the role is switched locally.
        if role is not None:
            conn.execute(text("SELECT set_config('role', :r, true)"), {"r": role})
        found = (
            conn.execute(
                text(
                    "SELECT current_user AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls, "
                    "pg_has_role(current_user, c.relowner, 'USAGE') AS owner FROM pg_roles r, pg_class c "
                    "WHERE r.rolname = current_user AND c.oid = to_regclass('\"AttributionLink\"')"
                )
            )
            .mappings()
            .one()
        )
    if found["superuser"] or found["bypassrls"] or found["owner"]:
        why = "a superuser" if found["superuser"] else "BYPASSRLS" if found["bypassrls"] else "the owner of the tables"
        raise ConfigError(
            f"the service would run as {found['role']!r}, which is {why} and so bypasses row-level security; "
            f"act as {SERVICE_ROLE!r} (the default) or log in as a member of it"
        )
    return dict(found)
