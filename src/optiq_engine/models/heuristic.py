"""The rule-based models of docs/contract.md §3: each a name, its parameters and a kernel code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..kernels import weights as k
from .base import HeuristicModel, register_model

if TYPE_CHECKING:
    from ..config import AttributionConfig

__all__ = ["FirstTouch", "LastTouch", "LastNonDirect", "Linear", "PositionBased", "TimeDecay", "HEURISTIC_MODELS"]


@register_model
@dataclass(frozen=True)
class FirstTouch(HeuristicModel):
    """All credit to the first touchpoint."""

    name = "FIRST_TOUCH"

    def kernel_spec(self) -> tuple[int, float, float]:
        return k.FIRST_TOUCH, 0.0, 0.0


@register_model
@dataclass(frozen=True)
class LastTouch(HeuristicModel):
    """All credit to the last touchpoint."""

    name = "LAST_TOUCH"

    def kernel_spec(self) -> tuple[int, float, float]:
        return k.LAST_TOUCH, 0.0, 0.0


@register_model
@dataclass(frozen=True)
class LastNonDirect(HeuristicModel):
    """All credit to the last touchpoint whose channel is not direct (else the last)."""

    name = "LAST_NON_DIRECT"

    def kernel_spec(self) -> tuple[int, float, float]:
        return k.LAST_NON_DIRECT, 0.0, 0.0


@register_model
@dataclass(frozen=True)
class Linear(HeuristicModel):
    """Equal credit, 1/n, to each touchpoint."""

    name = "LINEAR"

    def kernel_spec(self) -> tuple[int, float, float]:
        return k.LINEAR, 0.0, 0.0


def check_position_shares(first: float, last: float) -> None:
    """Validate POSITION_BASED shares: each in [0, 1], first + last in (0, 1]."""
    for name, v in (("first", first), ("last", last)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            raise ConfigError(f"position share {name} must be a number in [0, 1], got {v!r}")
    if not 0 < first + last <= 1:
        raise ConfigError(f"position shares first + last must be in (0, 1], got {first} + {last} = {first + last}")


@register_model
@dataclass(frozen=True)
class PositionBased(HeuristicModel):
    """``first`` to the first touchpoint, ``last`` to the last, the rest evenly in between.

    Presets: :meth:`u_shaped` (0.4, 0.4), :meth:`j_curve` (0.2, 0.6), :meth:`inverse_j` (0.6, 0.2).

    Parameters
    ----------
    first
        Share of the first touchpoint, in [0, 1] (default 0.4).
    last
        Share of the last touchpoint, in [0, 1] (default 0.4); ``first + last`` must be in (0, 1].

    Raises
    ------
    ConfigError
        A share that is not a finite number in [0, 1], or ``first + last`` outside (0, 1].
    """

    name = "POSITION_BASED"
    first: float = 0.4
    last: float = 0.4

    def __post_init__(self) -> None:
        check_position_shares(self.first, self.last)

    @classmethod
    def u_shaped(cls) -> PositionBased:
        return cls(0.4, 0.4)

    @classmethod
    def j_curve(cls) -> PositionBased:
        return cls(0.2, 0.6)

    @classmethod
    def inverse_j(cls) -> PositionBased:
        return cls(0.6, 0.2)

    @classmethod
    def from_config(cls, config: AttributionConfig) -> PositionBased:
        """The model given by name: ``first`` and ``last`` from ``config``.

        Parameters
        ----------
        config
            The run's options: ``position_first`` and ``position_last``.

        Returns
        -------
        PositionBased
        """
        return cls(config.position_first, config.position_last)

    def kernel_spec(self) -> tuple[int, float, float]:
        return k.POSITION_BASED, float(self.first), float(self.last)


@register_model
@dataclass(frozen=True)
class TimeDecay(HeuristicModel):
    """Weight halving every ``half_life`` of age before the conversion, normalised to 1.

    Parameters
    ----------
    half_life
        The age (conversion time minus touch time) at which a touch's weight halves (default 7 days).

    Raises
    ------
    ConfigError
        ``half_life`` is not a positive :class:`~datetime.timedelta` of whole microseconds.
    """

    name = "TIME_DECAY"
    half_life: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        hl = self.half_life
        if not isinstance(hl, timedelta) or hl <= timedelta(0) or hl % timedelta(microseconds=1):
            raise ConfigError(f"TIME_DECAY half_life must be a positive timedelta of whole microseconds, got {hl!r}")

    @classmethod
    def from_config(cls, config: AttributionConfig) -> TimeDecay:
        """The model given by name: ``half_life`` from ``config``.

        Parameters
        ----------
        config
            The run's options: ``half_life``.

        Returns
        -------
        TimeDecay
        """
        return cls(config.half_life)

    def kernel_spec(self) -> tuple[int, float, float]:
        return k.TIME_DECAY, float(self.half_life // timedelta(microseconds=1)), 0.0


#: Names of the heuristic models, in the order ``attribute(models=None)`` runs them.
HEURISTIC_MODELS: tuple[str, ...] = tuple(
    m.name for m in (FirstTouch, LastTouch, LastNonDirect, Linear, PositionBased, TimeDecay)
)
