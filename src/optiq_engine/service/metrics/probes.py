"""What a report looks up before it answers: whether the organization's credit is summarized, and whether
a model ever ran (its attribution results), with the message that says it did not."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from ...errors import ConfigError
from .query import MetricsQuery
from .sql import _name_filter

_ZONE_NAMES: frozenset[str] = frozenset()  # the server's time zone names, read once per process


def check_time_zones(connection: Connection, organization_id: str) -> None:
    """Refuse a report whose days would be wrong: an ``AdAccount.timezone`` that is not a time zone name.

    Postgres reads ``'+05:30'`` POSIX-style, as UTC-05:30 (India's days would shift by 11 hours, silently),
    and refuses ``'Pacific Time'`` with an error that names nothing; both are refused here, naming them.

    Parameters
    ----------
    connection
        A SQLAlchemy connection.
    organization_id
        ``Organization.id``.

    Raises
    ------
    ConfigError
        An ad account of the organization has a time zone that is not in ``pg_timezone_names``.
    """
    global _ZONE_NAMES
    zones = connection.execute(
        text('SELECT DISTINCT timezone FROM "AdAccount" WHERE "organizationId" = :org AND timezone IS NOT NULL'),
        {"org": organization_id},
    ).scalars()
    given = set(zones)
    if given and not given <= _ZONE_NAMES:
        _ZONE_NAMES = frozenset(connection.execute(text("SELECT name FROM pg_timezone_names")).scalars())
    bad = sorted(given - _ZONE_NAMES)
    if bad:
        raise ConfigError(
            f"ad account time zone(s) {bad} are not time zone names (Postgres reads '+05:30' as UTC-05:30, "
            "POSIX-style): set AdAccount.timezone to an IANA name such as 'Asia/Kolkata' or 'America/Los_Angeles'"
        )


def is_summarized(connection: Connection, organization_id: str) -> bool:
    """Whether the organization's credit is summarized (``optiq db summarize``; a primary-key lookup).

    Parameters
    ----------
    connection
        A SQLAlchemy connection.
    organization_id
        ``Organization.id``.

    Returns
    -------
    bool
        True when it has an ``"EngineCreditState"`` row.
    """
    found = connection.execute(
        text('SELECT EXISTS (SELECT 1 FROM "EngineCreditState" WHERE "organizationId" = :org)'),
        {"org": organization_id},
    ).scalar()
    return bool(found)


def has_attribution_results(query: MetricsQuery, connection: Connection) -> bool:
    """Whether the organization has any attribution link of ``query.model`` (and ``query.conversion_name``),
    in any period: without one, a report's zero conversions and ROAS of 0 mean "never run", not "none".

    Parameters
    ----------
    query
        The report: its ``organization_id``, ``model`` and ``conversion_name`` (its dates are ignored).
    connection
        A SQLAlchemy connection.

    Returns
    -------
    bool
    """
    params: dict[str, Any] = {"org": query.organization_id, "model": query.model}
    name = _name_filter(query, params)
    found = connection.execute(
        text(
            'SELECT EXISTS (SELECT 1 FROM "TrackingSite" s\n'
            '  JOIN "TrackingEvent" e ON e."siteId" = s.id AND e.type = \'CONVERSION\'\n'
            '  JOIN "AttributionLink" l ON l."conversionId" = e.id AND l.model = CAST(:model AS "AttributionModel")\n'
            f'  WHERE s."organizationId" = :org{name})'
        ),
        params,
    ).scalar()
    return bool(found)


def no_results_message(query: MetricsQuery) -> str:
    """The one line that says a report's model (or conversion type) has no attribution results.

    Parameters
    ----------
    query
        The report: its ``model`` and ``conversion_name`` are named.

    Returns
    -------
    str
    """
    what = f"model {query.model}"
    if query.conversion_name is not None:
        what += f" and conversion name {query.conversion_name!r}"
    return (
        f"no attribution results for {what} in this organization: its conversions and ROAS would read 0;"
        " run the engine with this model (optiq run, attributionSettings.models) or ask for one it ran"
    )
