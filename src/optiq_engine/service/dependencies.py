"""What every route of the HTTP API depends on: the request's transaction, the caller's API key, the role check.

Route parameters annotated with these types get them from FastAPI: ``conn: Conn`` (the one transaction of the
request), ``caller: Caller`` (the authenticated key; 401 otherwise) and ``caller: Writer`` (a key that may
write; 403 for VIEWER keys). A route that takes a ``Caller`` sees the key's organization only, under row-level
security (:mod:`optiq_engine.service.tenancy`), even in a query that forgot its own filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from . import keys, tenancy

__all__ = ["Caller", "Conn", "Writer"]

_bearer = HTTPBearer(auto_error=False, description="An Optiq API key: `optiq_<id>_<secret>`")


def _connection(request: Request) -> Iterator[Connection]:
    """One transaction per request (committed when the route returns, rolled back when it raises), acting as
    the service role and scoped to no organization until the key is authenticated."""
    with request.app.state.engine.begin() as conn:
        yield conn


Conn = Annotated[Connection, Depends(_connection)]


def _principal(
    conn: Conn, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> keys.Principal:
    """The caller's API key, authenticated in the request's transaction, which then sees its organization only.

    Parameters
    ----------
    conn
        The request's transaction (:func:`_connection`).
    credentials
        The ``Authorization: Bearer optiq_<id>_<secret>`` header, if any.

    Returns
    -------
    keys.Principal
        The key's organization, user and role.

    Raises
    ------
    HTTPException
        401 (with ``WWW-Authenticate: Bearer``) when the key is missing, unknown, revoked or wrong.
    """
    found = None
    if credentials:
        key_id = credentials.credentials.split("_")[1] if credentials.credentials.count("_") >= 2 else ""
        tenancy.set_organization(conn, None, api_key_id=key_id[:200])  # row-level security: only this key is visible
        found = keys.authenticate(conn, credentials.credentials)
    if found is None:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    tenancy.set_organization(conn, found.organization_id)  # the rest of the transaction sees this organization only
    return found


Caller = Annotated[keys.Principal, Depends(_principal)]


def _writer(caller: Caller) -> keys.Principal:
    """The caller, if its key's role may write.

    Parameters
    ----------
    caller
        The authenticated key (:func:`_principal`).

    Returns
    -------
    keys.Principal
        ``caller``.

    Raises
    ------
    HTTPException
        403 when the role is read-only (VIEWER).
    """
    if not caller.can_write:
        raise HTTPException(403, f"the key's role {caller.role} is read-only")
    return caller


Writer = Annotated[keys.Principal, Depends(_writer)]
