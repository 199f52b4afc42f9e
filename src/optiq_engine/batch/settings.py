"""``OrganizationSettings.attributionSettings`` as the engine's options (docs/attribution.md).

:func:`settings_from_json`: config options and model names; :func:`conversion_settings`: credit per
conversion type (``by`` and ``conversionTypes``). Unknown keys are ignored with a warning (the platform may
store settings the engine does not read); a value that cannot be converted is a :class:`ConfigError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..config import json_bool, json_number
from ..errors import ConfigError, did_you_mean

__all__ = ["conversion_settings", "settings_from_json"]

log = logging.getLogger(__name__)


def _days(value: Any) -> timedelta:
    return timedelta(days=json_number()(value))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a string is needed, got {type(value).__name__}")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    """A JSON list of strings: ``"email"`` was ``tuple("email")``, the channels e, m, a, i, l."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"a list of strings is needed, got {type(value).__name__}")
    return tuple(value)


def _count(value: Any) -> int | None:
    return None if value is None else json_number(integer=True)(value)


_SETTING_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "lookbackDays": ("lookback", _days),
    "halfLifeDays": ("half_life", _days),
    "resetAfterConversion": ("reset_after_conversion", json_bool),
    "positionFirst": ("position_first", json_number()),
    "positionLast": ("position_last", json_number()),
    "directChannels": ("direct_channels", _texts),
    "touchRule": ("touch_rule", _text),
    "dropDirect": ("drop_direct", _text),
    "maxTouchpoints": ("max_touchpoints", _count),  # null: no cap; AttributionConfig checks the rest
    "identity": ("identity", _text),  # "stitched": anon ids joined by a user id (docs/contract.md §1.5)
    "identityKey": ("identity_key", _text),  # the key of TrackingEvent.properties holding the user id
    "experiments": ("experiments", lambda v: _experiments(v)),
}


def _experiments(value: Any) -> tuple[Any, ...]:
    """``attributionSettings.experiments``: lift tests for DATA_DRIVEN (a list of objects)."""
    from ..experiments import experiments_from_json

    return experiments_from_json(value)


def settings_from_json(settings: dict[str, Any] | None) -> tuple[dict[str, Any], list[str] | None]:
    """Config options and model names from ``OrganizationSettings.attributionSettings``.

    Recognised keys: ``lookbackDays``, ``halfLifeDays``, ``resetAfterConversion``, ``positionFirst``,
    ``positionLast``, ``directChannels``, ``touchRule``, ``dropDirect``, ``maxTouchpoints`` (the heuristic
    models' path rules, docs/attribution.md "Path rules"), ``experiments`` (lift tests calibrating DATA_DRIVEN: objects with
    ``channel``, ``incremental_conversions``, ``std_error``, ``start``, ``end``) and ``models`` (enum names);
    ``by`` and ``conversionTypes`` are read by :func:`conversion_settings`; others are ignored with a warning.

    Parameters
    ----------
    settings
        The ``attributionSettings`` JSON object (None: none).

    Returns
    -------
    options : dict
        ``AttributionConfig`` fields (``lookback=timedelta(days=...)`` ...), not yet validated.
    models : list of str or None
        ``models`` as strings; None when absent or empty.

    Raises
    ------
    ConfigError
        A recognised key whose value cannot be converted (``lookbackDays: "a month"``, a bad experiment).
    """
    options: dict[str, Any] = {}
    models = None
    for key, value in (settings or {}).items():
        if key in _CONVERSION_KEYS:
            continue
        if key == "models":
            try:
                models = list(_texts(value)) or None
            except TypeError as exc:
                raise ConfigError(f"attributionSettings.models: cannot use {value!r}: {exc}") from None
        elif key in _SETTING_FIELDS:
            name, convert = _SETTING_FIELDS[key]
            try:
                options[name] = convert(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"attributionSettings.{key}: cannot use {value!r}: {exc}") from None
        else:
            known = [*_SETTING_FIELDS, *_CONVERSION_KEYS, "models"]
            log.warning("ignoring unknown attributionSettings key %r%s", key, did_you_mean(key, known))
    return options, models


#: ``attributionSettings`` keys of credit per conversion type (:func:`conversion_settings`).
_CONVERSION_KEYS = ("by", "conversionTypes")


def conversion_settings(settings: dict[str, Any] | None) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """``by`` and the per-name options of ``attributionSettings`` (docs/attribution.md "Conversion types").

    ``{"by": "name", "conversionTypes": {"purchase": {"lookbackDays": 90, "models": ["LAST_TOUCH"]}}}``
    attributes each conversion name on its own (``attribute(by="name")``), a name's object overriding the
    organization's keys for that name: the keys of :func:`settings_from_json` (camelCase, the same
    conversions) and ``models``. Returns ``(by, {name: options})``, the options as ``attribute``'s
    ``conversion_types`` takes them (``lookback=timedelta(days=90)``, ``models=[...]``).

    Parameters
    ----------
    settings
        The ``attributionSettings`` JSON object (None: none).

    Returns
    -------
    by : str or None
        ``"name"`` or None.
    conversion_types : dict
        ``{name: options}`` (empty without ``conversionTypes``).

    Raises
    ------
    ConfigError
        ``by`` other than ``"name"``, ``conversionTypes`` without it or not an object of objects, a key of
        a name's object that is not one of those, or a value that cannot be converted.
    """
    settings = settings or {}
    by = settings.get("by")
    if by is not None and by != "name":
        raise ConfigError(
            f'attributionSettings.by: cannot use {by!r}; "name" attributes each conversion type on its own'
        )
    types = settings.get("conversionTypes")
    if types is None:
        return by, {}
    if by is None:
        raise ConfigError(
            'attributionSettings.conversionTypes needs "by": "name" (one attribution per conversion type)'
        )
    if not isinstance(types, dict) or not all(isinstance(v, dict) for v in types.values()):
        raise ConfigError(f"attributionSettings.conversionTypes must map names to objects of settings, got {types!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, keys in types.items():
        unknown = sorted(set(keys) - set(_SETTING_FIELDS) - {"models"})
        if unknown:
            raise ConfigError(
                f"attributionSettings.conversionTypes.{name}: unknown key(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted({*_SETTING_FIELDS, 'models'}))}"
            )
        options, models = settings_from_json(keys)
        out[name] = {**options, **({"models": models} if models else {})}
    return by, out
