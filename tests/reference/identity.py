"""Reference identity stitching (docs/contract.md §1.5), written for obviousness, not speed.

Every row (touchpoint or conversion) may carry a ``user_id``; a blank one (empty or only whitespace) or a
placeholder (the list of docs/contract.md §1.5, without case or surrounding whitespace) is no identity. Each anon id (within its organization / site scope) that was seen with a user id belongs to the
user id of its latest identified row, at equal times the greatest user id in byte order; all its rows,
earlier ones included, belong to that person. An anon id never seen with a user id is its own person. A
person is ``("user", user_id)`` or ``("anon", anon_id)``: a user id never equals an anon id.
"""

from __future__ import annotations

import re

PLACEHOLDERS = {"null", "none", "nil", "nan", "undefined", "unknown", "anonymous", "guest", "n/a", "na", "-", "0", "-1"}


def is_blank(user_id: str | None) -> bool:
    """True for a missing user id, one that is empty or only whitespace, or a placeholder."""
    return user_id is None or re.fullmatch(r"\s*", user_id) is not None or user_id.strip().lower() in PLACEHOLDERS


def anon_key(row: dict, scope: tuple[str, ...]) -> tuple:
    """The anon id of a row within its scope."""
    return tuple(row.get(c) for c in scope) + (row["anon_id"],)


def stitch_map_reference(rows: list[dict], scope: tuple[str, ...]) -> dict[tuple, str]:
    """For every identified anon id (its :func:`anon_key`), the user id of its latest identified row."""
    latest: dict[tuple, tuple[int, bytes]] = {}
    for row in rows:
        user_id = row.get("user_id")
        if is_blank(user_id):
            continue
        key = anon_key(row, scope)
        candidate = (row["occurred_at"], user_id.encode())
        if key not in latest or candidate > latest[key]:
            latest[key] = candidate
    return {key: user_id.decode() for key, (_, user_id) in latest.items()}


def person_of(row: dict, mapping: dict[tuple, str], scope: tuple[str, ...]) -> tuple:
    """The person a row belongs to under ``mapping``."""
    key = anon_key(row, scope)
    if key in mapping:
        return ("user", mapping[key])
    return ("anon", row["anon_id"])


def with_persons(
    touchpoints: list[dict], conversions: list[dict], scope: tuple[str, ...]
) -> tuple[list[dict], list[dict], dict[tuple, str]]:
    """Copies of the rows with a ``person`` key (group them by ``scope + ("person",)``) and the map."""
    mapping = stitch_map_reference(touchpoints + conversions, scope)
    tp = [dict(row, person=person_of(row, mapping, scope)) for row in touchpoints]
    cv = [dict(row, person=person_of(row, mapping, scope)) for row in conversions]
    return tp, cv, mapping


def summary_reference(touchpoints: list[dict], conversions: list[dict], scope: tuple[str, ...]) -> dict[str, int]:
    """The counts of ``IdentityStitch``, from their definitions."""
    rows = touchpoints + conversions
    mapping = stitch_map_reference(rows, scope)
    anon_ids = {anon_key(row, scope) for row in rows}
    persons: dict[tuple, set[tuple]] = {}
    for key in anon_ids:
        scope_part = key[:-1]
        person = scope_part + (("user", mapping[key]) if key in mapping else ("anon", key[-1]),)
        persons.setdefault(person, set()).add(key)
    merged = [members for members in persons.values() if len(members) > 1]
    user_ids: dict[tuple, set[str]] = {}
    for row in rows:
        if not is_blank(row.get("user_id")):
            user_ids.setdefault(anon_key(row, scope), set()).add(row["user_id"])
    return {
        "anon_ids": len(anon_ids),
        "identified": len(mapping),
        "persons": len(persons),
        "merged_anon_ids": sum(len(m) for m in merged),
        "merged_persons": len(merged),
        "several_user_ids": sum(1 for ids in user_ids.values() if len(ids) > 1),
        "blank_user_ids": sum(1 for row in rows if row.get("user_id") is not None and is_blank(row["user_id"])),
    }
