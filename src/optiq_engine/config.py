"""Configuration: frozen dataclasses, validated on construction."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError

if TYPE_CHECKING:
    from .channels import ChannelRules

__all__ = ["AttributionConfig", "DropDirect", "Identity", "OnInvalid", "TouchRule"]

OnInvalid = Literal["raise", "quarantine"]
ValueUnit = Literal["micros", "currency"]
TouchRule = Literal["all", "collapse_repeats", "first_per_channel"]
DropDirect = Literal["never", "unless_all_direct", "trailing_unless_all_direct"]
Identity = Literal["anon_id", "stitched"]
#: Grouping identities (docs/contract.md §1.5): each anon id, or anon ids stitched into persons by a user id.
IDENTITIES: tuple[str, ...] = ("anon_id", "stitched")

#: Path rules of the heuristic models (docs/attribution.md "Path rules"), in kernel code order.
TOUCH_RULES: tuple[str, ...] = ("all", "collapse_repeats", "first_per_channel")
DROP_DIRECT: tuple[str, ...] = ("never", "unless_all_direct", "trailing_unless_all_direct")
#: Names other tools give these rules, for the hint of a refused name (docs/attribution.md "Path rules").
_PATH_RULE_HINTS = {
    "exposure": "touch_rule='collapse_repeats'",
    "exposure_path": "touch_rule='collapse_repeats'",
    "first_path": "touch_rule='first_per_channel'",
    "unique": "touch_rule='first_per_channel' (this engine's path_transform='unique') or touch_rule='all' "
    "(Snowplow's unique_path)",
    "unique_path": "touch_rule='all'",
    "first": "touch_rule='first_per_channel' (Snowplow's first_path) or the FIRST_TOUCH model (this engine's "
    "path_transform='first')",
    "frequency": "touch_rule='all' (this engine's path_transform='frequency')",
    "remove_if_not_all": "drop_direct='unless_all_direct'",
    "remove_if_last_and_not_all": "drop_direct='trailing_unless_all_direct'",
}


def json_number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, integer: bool = False):
    """A checker of a JSON setting that must be a number (alert rules' ``config``, ``attributionSettings``).

    ``"7"`` and ``true`` are refused, not read as 7 and 1: a writer that sends strings has a bug worth seeing.

    Parameters
    ----------
    lo, hi
        Bounds (None: none); ``lo`` is excluded with ``lo_open``, ``hi`` included.
    lo_open
        Whether ``lo`` itself is refused.
    integer
        A whole number is needed (``3.0`` is 3).

    Returns
    -------
    callable
        ``check(value)``: the number (``int`` with ``integer``, else ``float``); a :class:`ValueError` saying
        what is needed otherwise.
    """

    def check(v: Any) -> float | int:
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not math.isfinite(v)):
            raise ValueError(f"must be a {'whole ' if integer else ''}number, got {v!r}")
        if integer and (isinstance(v, float) and not v.is_integer()):
            raise ValueError(f"must be a whole number, got {v!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise ValueError(f"must be {'>' if lo_open else '>='} {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise ValueError(f"must be <= {hi}, got {v!r}")
        return int(v) if integer else float(v)

    return check


def json_bool(v: Any) -> bool:
    """A JSON setting that must be true or false: ``"false"`` would be ``bool("false")``, i.e. true.

    Parameters
    ----------
    v
        The value.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        ``v`` is not a boolean.
    """
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def check_on_invalid(on_invalid: Any) -> None:
    """Validate what to do with invalid rows: ``"raise"`` or ``"quarantine"``."""
    if on_invalid not in ("raise", "quarantine"):
        raise ConfigError(f"on_invalid must be 'raise' or 'quarantine', got {on_invalid!r}")


def check_path_rules(touch_rule: Any, drop_direct: Any, max_touchpoints: Any) -> None:
    """Validate the heuristic models' path rules; a name of another tool gets the equivalent as a hint."""
    for option, value, valid in (("touch_rule", touch_rule, TOUCH_RULES), ("drop_direct", drop_direct, DROP_DIRECT)):
        if value not in valid:
            hint = _PATH_RULE_HINTS.get(value) if isinstance(value, str) else None
            raise ConfigError(
                f"{option} must be one of {', '.join(map(repr, valid))}, got {value!r}"
                + (f"; for that rule use {hint}" if hint else "")
                + " (docs/attribution.md, Path rules)"
            )
    if max_touchpoints is not None and (
        isinstance(max_touchpoints, bool) or not isinstance(max_touchpoints, int) or max_touchpoints < 1
    ):
        raise ConfigError(
            f"max_touchpoints must be a whole number >= 1 (the latest touches kept), got {max_touchpoints!r}; "
            "leave it unset (None; null in attributionSettings) for no cap"
        )


def check_identity(identity: Any, identity_key: Any) -> None:
    """Validate the grouping identity and the user id's key in tracking events' properties (docs/contract.md §1.5)."""
    if identity not in IDENTITIES:
        raise ConfigError(
            f"identity must be one of {', '.join(map(repr, IDENTITIES))}, got {identity!r}; 'stitched' joins anon ids "
            "by the user_id column (docs/contract.md §1.5)"
        )
    if not isinstance(identity_key, str) or not re.fullmatch(r"[A-Za-z0-9_$-]+", identity_key):
        raise ConfigError(
            f"identity_key must be the key of TrackingEvent.properties holding the user id (letters, digits, _, $ "
            f"or -, such as 'userId'), got {identity_key!r}"
        )


def _positive_timedelta(name: str, value: Any) -> None:
    if not isinstance(value, timedelta):
        raise ConfigError(f"{name} must be a datetime.timedelta, got {type(value).__name__} {value!r}")
    if value <= timedelta(0):
        raise ConfigError(f"{name} must be positive, got {value}")
    if value % timedelta(microseconds=1) != timedelta(0):
        raise ConfigError(f"{name} must be a whole number of microseconds, got {value}")


@dataclass(frozen=True)
class AttributionConfig:
    """Options of :func:`optiq_engine.attribute` (docs/contract.md §2–§4).

    Parameters
    ----------
    lookback
        A conversion at ``T`` credits touchpoints with ``T - lookback < t <= T``.
    reset_after_conversion
        A touchpoint belongs to at most one conversion, the first at or after it.
    session_timeout
        Gap that splits sessions (journeys, docs/contract.md §5).
    position_first, position_last
        Default shares of ``POSITION_BASED`` when the model is given by name (checked by
        :class:`~optiq_engine.models.PositionBased`, as every model default below by its model).
    half_life
        Default half-life of ``TIME_DECAY`` when the model is given by name.
    direct_channels
        Channels that ``LAST_NON_DIRECT`` skips.
    on_invalid
        ``"raise"`` an :class:`InputError` on invalid rows, or ``"quarantine"`` them and go on.
    channel_rules
        Rules that derive ``channel`` from click ids and UTM parameters (default:
        :data:`optiq_engine.channels.DEFAULT_CHANNEL_RULES`).
    markov_order, path_transform, remove_direct_if_not_all, shapley_characteristic
        Defaults of the data-driven models given by name (docs/data_driven.md).
    bootstrap, bootstrap_level, seed
        Poisson-bootstrap replicates (0: none), interval level and seed of the data-driven models.
    experiments
        Lift tests (:class:`optiq_engine.Experiment`) that calibrate DATA_DRIVEN given by name
        (docs/data_driven.md §6).
    timezone
        IANA zone of naive input times (no offset); ``None``: UTC, with a warning (docs/contract.md §1.2).
    timestamp_format
        A ``strftime`` format for timestamp strings that are not ISO 8601 (``"%m/%d/%Y %H:%M"``).
    value_column, value_unit
        The conversions' money column (default ``value_micros``) and its unit: ``"micros"`` (integers) or
        ``"currency"`` (``49.99``, converted exactly to micros; docs/contract.md §1.1).
    touch_rule, drop_direct, max_touchpoints
        Path rules of the heuristic models (docs/attribution.md "Path rules"): which touches of a
        conversion's window they credit. ``touch_rule``: ``"all"`` (default), ``"collapse_repeats"``
        (the first touch of each run of one channel) or ``"first_per_channel"``; ``drop_direct``:
        ``"never"`` (default), ``"unless_all_direct"`` or ``"trailing_unless_all_direct"`` (the direct
        touches that end the path); ``max_touchpoints``: only the latest N touches (``None``: no cap).
        A touch the rules leave out keeps its link with weight 0.
    identity, identity_key
        Whose journeys are grouped: ``"anon_id"`` (default: each cookie) or ``"stitched"`` (anon ids joined
        into persons by the ``user_id`` column, docs/contract.md §1.5); ``identity_key``: the key of
        ``TrackingEvent.properties`` holding the user id (``optiq run``; ``attributionSettings.identityKey``).

    Raises
    ------
    ConfigError
        Any invalid field, named in the message: a ``lookback`` / ``session_timeout`` / ``half_life`` that is
        not a positive timedelta of whole microseconds, position shares out of range, an unknown
        ``on_invalid`` / ``touch_rule`` / ``drop_direct`` / ``identity`` / ``value_unit`` / ``timezone``, a
        ``timestamp_format`` without ``%``, ``max_touchpoints`` < 1, or a default of MARKOV / SHAPLEY
        (``markov_order``, ``path_transform``, ``shapley_characteristic``, ``bootstrap``, ``bootstrap_level``,
        ``seed``) those models refuse.
    """

    lookback: timedelta = timedelta(days=30)
    reset_after_conversion: bool = True
    session_timeout: timedelta = timedelta(minutes=30)
    position_first: float = 0.4
    position_last: float = 0.4
    half_life: timedelta = timedelta(days=7)
    direct_channels: tuple[str, ...] = ("direct",)
    on_invalid: OnInvalid = "raise"
    channel_rules: ChannelRules | None = field(default=None, compare=False)
    markov_order: int = 1
    path_transform: str = "exposure"
    remove_direct_if_not_all: bool = False
    shapley_characteristic: str = "rate"
    bootstrap: int = 0
    bootstrap_level: float = 0.95
    seed: int = 0
    experiments: tuple[Any, ...] = ()
    timezone: str | None = None
    timestamp_format: str | None = None
    value_column: str | None = None
    value_unit: ValueUnit = "micros"
    touch_rule: TouchRule = "all"
    drop_direct: DropDirect = "never"
    max_touchpoints: int | None = None
    identity: Identity = "anon_id"
    identity_key: str = "userId"

    def __post_init__(self) -> None:
        _positive_timedelta("lookback", self.lookback)
        _positive_timedelta("session_timeout", self.session_timeout)
        if not isinstance(self.reset_after_conversion, bool):
            raise ConfigError(f"reset_after_conversion must be True or False, got {self.reset_after_conversion!r}")
        if isinstance(self.direct_channels, str) or not all(isinstance(c, str) for c in self.direct_channels):
            raise ConfigError(f"direct_channels must be a tuple of channel names, got {self.direct_channels!r}")
        object.__setattr__(self, "direct_channels", tuple(self.direct_channels))
        check_on_invalid(self.on_invalid)
        from .money import check_value_options  # here, not at the top: they import polars
        from .timestamps import check_timestamp_format, check_timezone

        check_timezone(self.timezone)
        check_timestamp_format(self.timestamp_format)
        check_value_options(self.value_column, self.value_unit)
        check_path_rules(self.touch_rule, self.drop_direct, self.max_touchpoints)
        check_identity(self.identity, self.identity_key)
        object.__setattr__(self, "experiments", tuple(self.experiments or ()))
        # The models' defaults are checked by the models: their classes own their options (no model module
        # imports this one). Imported here, not at the top: the models pull in Numba.
        from .models import Markov, PositionBased, Shapley, TimeDecay

        for model in (PositionBased, TimeDecay, Markov, Shapley):
            model.from_config(self)

    def with_options(self, **options: Any) -> AttributionConfig:
        """A copy with some fields replaced; unknown names raise :class:`ConfigError`.

        Parameters
        ----------
        **options
            Field names and their new values (``lookback=timedelta(days=7)``).

        Returns
        -------
        AttributionConfig
            ``self`` when no option is given, else a new, validated config.

        Raises
        ------
        ConfigError
            An unknown option name (the message lists the valid ones), or an invalid value.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(names))}")
        return replace(self, **options) if options else self
