"""Per-organization API keys for the HTTP API, stored hashed.

A key is ``optiq_<key id>_<secret>``: the id finds the row, the secret is checked against its SHA-256
hash (the secret is 256 random bits, so a fast hash is enough; the plain secret is shown once, at
creation, and never stored). A key belongs to a user of an organization; its role is that user's
``Membership.role`` in that organization, read at every request (a changed role or a removed membership
takes effect at once).

The seed schema has no table for API keys; they are kept in the engine's ``"ApiKey"`` table
(:data:`optiq_engine.io.schema.api_key`), created by migration 0003 (``optiq db upgrade``). It references
``Organization`` and ``User`` and goes with either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from .errors import NotFoundError, PermissionDeniedError

__all__ = ["Principal", "create_api_key", "authenticate", "revoke_api_key", "read_api_keys", "WRITE_ROLES"]

#: Roles that may change data (VIEWER is read-only).
WRITE_ROLES = ("OWNER", "ADMIN", "MEMBER")
_PREFIX = "optiq"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's organization, user and role.

    Made by :func:`authenticate`.

    Parameters
    ----------
    organization_id
        The key's organization: every request is scoped to it.
    user_id
        The key's user.
    role
        The user's ``Membership.role`` in the organization, read at this request (``OWNER``, ``ADMIN``,
        ``MEMBER``, ``VIEWER``).
    key_id
        The key's id.
    """

    organization_id: str
    user_id: str
    role: str
    key_id: str

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(connection: Connection, *, organization_id: str, user_id: str, name: str = "api") -> tuple[str, str]:
    """A new key for ``user_id`` (a member of the organization); returns ``(key id, the key to hand out)``.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits.
    organization_id
        The key's organization.
    user_id
        A member of it (any role; the role is read at every request).
    name
        A label for the key (default ``"api"``).

    Returns
    -------
    key_id : str
        16 hex digits.
    key : str
        ``optiq_<key id>_<secret>``: shown once, never stored (only its secret's SHA-256).

    Raises
    ------
    PermissionDeniedError
        If the user is not a member of the organization.
    """
    role = connection.execute(
        text('SELECT role::text FROM "Membership" WHERE "userId" = :u AND "organizationId" = :o'),
        {"u": user_id, "o": organization_id},
    ).scalar()
    if role is None:
        raise PermissionDeniedError(
            f"user {user_id!r} is not a member of organization {organization_id!r}; add a Membership first"
        )
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    connection.execute(
        text('INSERT INTO "ApiKey" (id, "organizationId", "userId", name, "keyHash") VALUES (:id, :o, :u, :n, :h)'),
        {"id": key_id, "o": organization_id, "u": user_id, "n": name, "h": _hash(secret)},
    )
    return key_id, f"{_PREFIX}_{key_id}_{secret}"


def authenticate(connection: Connection, token: str) -> Principal | None:
    """The principal of a presented key, or None (malformed, unknown, revoked, wrong secret, no membership).

    Parameters
    ----------
    connection
        A SQLAlchemy connection; under the service role, one whose ``optiq.api_key_id`` names the key
        (:func:`optiq_engine.service.tenancy.set_organization`), or row-level security hides it.
    token
        The presented key, ``optiq_<key id>_<secret>`` (at most 200 characters).

    Returns
    -------
    Principal or None
    """
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != _PREFIX or not key_id or not secret or len(token) > 200:
        return None
    row = (
        connection.execute(
            text(
                'SELECT k."organizationId", k."userId", k."keyHash", m.role::text AS role FROM "ApiKey" k\n'
                'JOIN "Membership" m ON m."userId" = k."userId" AND m."organizationId" = k."organizationId"\n'
                'WHERE k.id = :id AND k."revokedAt" IS NULL'
            ),
            {"id": key_id},
        )
        .mappings()
        .first()
    )
    if row is None or not hmac.compare_digest(row["keyHash"], _hash(secret)):
        return None
    return Principal(row["organizationId"], row["userId"], row["role"], key_id)


def revoke_api_key(connection: Connection, key_id: str, *, organization_id: str) -> None:
    """Revoke a key of the organization; :class:`NotFoundError` if it has none with that id.

    Parameters
    ----------
    connection
        A SQLAlchemy connection in a transaction the caller commits.
    key_id
        The key's id (the part after ``optiq_``).
    organization_id
        The key's organization.

    Raises
    ------
    NotFoundError
        No key ``key_id`` in the organization, or it is already revoked.
    """
    done = connection.execute(
        text(
            'UPDATE "ApiKey" SET "revokedAt" = :now, "updatedAt" = :now WHERE id = :id AND "organizationId" = :o AND "revokedAt" IS NULL'
        ),
        {"now": datetime.now(UTC), "id": key_id, "o": organization_id},
    ).rowcount
    if not done:
        raise NotFoundError(f"no active API key {key_id!r} in organization {organization_id!r}")


def read_api_keys(connection: Connection, *, organization_id: str) -> list[dict[str, Any]]:
    """The organization's keys (never their hashes).

    Parameters
    ----------
    connection
        A SQLAlchemy connection.
    organization_id
        The organization.

    Returns
    -------
    list of dict
        ``id``, ``userId``, ``name``, ``createdAt``, ``revokedAt`` (None while active), oldest first.
    """
    rows = connection.execute(
        text(
            'SELECT id, "userId", name, "createdAt", "revokedAt" FROM "ApiKey" WHERE "organizationId" = :o ORDER BY "createdAt"'
        ),
        {"o": organization_id},
    ).mappings()
    return [dict(r) for r in rows]
