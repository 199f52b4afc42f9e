"""Reference credit per conversion type (docs/attribution.md "Conversion types"), from the definition.

A conversion's *type* is its ``name``, or None when the name is absent, null, empty or blank. Each type is
attributed as if the conversions of the other types did not exist: the reference heuristic attribution
(:func:`tests.reference.attribution.attribute_reference`) runs on the touchpoints and that type's conversions
alone, with the type's own options, and the rows of all types are concatenated with the type as
``conversion_name``. The engine computes each type against touchpoints validated and channelled once; this
module never calls it.
"""

from __future__ import annotations

from typing import Any

from tests.reference.attribution import attribute_reference


def conversion_type(conversion: dict) -> str | None:
    """The type of a conversion: its name, None when absent, null, empty or only whitespace."""
    name = conversion.get("name")
    return None if name is None or not str(name).strip() else str(name)


def type_order(name: str | None) -> tuple[bool, str]:
    """Types sorted by name (Python's code point order, which is UTF-8 byte order), the nameless last."""
    return (name is None, name or "")


def attribute_by_type_reference(
    touchpoints: list[dict],
    conversions: list[dict],
    *,
    per_type: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> tuple[list[dict], list[dict]]:
    """``(links, unattributed)`` of every type, each row with ``conversion_name``.

    ``options`` are :func:`attribute_reference`'s keyword arguments (``models``, ``lookback_us``,
    ``reset_after_conversion``, ...); ``per_type[name]`` replaces some of them for that type.
    """
    links: list[dict] = []
    unattributed: list[dict] = []
    types = sorted({conversion_type(c) for c in conversions}, key=type_order)
    for name in types:
        mine = [c for c in conversions if conversion_type(c) == name]
        kwargs = {**options, **((per_type or {}).get(name, {}) if name is not None else {})}
        type_links, type_unattributed = attribute_reference(touchpoints, mine, **kwargs)
        links += [{**row, "conversion_name": name} for row in type_links]
        unattributed += [{**row, "conversion_name": name} for row in type_unattributed]
    return links, unattributed
