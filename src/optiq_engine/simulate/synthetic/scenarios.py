"""The generative model's parameters: channels, their UTM tags, and the scenarios (named presets).

:data:`CHANNELS` and their tags (:data:`CHANNEL_UTM`, :data:`CHANNEL_CAMPAIGNS`), the default channel
table and hazard constants (docs/synthetic.md §3 and §6), and :class:`Scenario`, a preset of the model
(channel parameters, hazard constants and extra terms), with the named presets of :data:`SCENARIOS`
(docs/synthetic.md §9). Plain data and validation: nothing here simulates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from ...errors import ConfigError

__all__ = [
    "CHANNELS",
    "CHANNEL_UTM",
    "CHANNEL_CAMPAIGNS",
    "SCENARIOS",
    "ChannelParams",
    "Follower",
    "Interaction",
    "OrderEffect",
    "Scenario",
    "get_scenario",
]

CHANNELS: tuple[str, ...] = (
    "direct",
    "google_ads",
    "meta_ads",
    "tiktok_ads",
    "paid_search",
    "paid_social",
    "display",
    "email",
    "affiliate",
    "referral",
    "organic_search",
    "organic_social",
    "video",
)
"""The channels the generator emits, in the order of the ``channel`` enum."""

CHANNEL_UTM: dict[str, tuple[str | None, str | None, str | None]] = {
    "direct": (None, None, None),
    "google_ads": ("google", "cpc", "gclid"),
    "meta_ads": ("facebook", "cpc", "fbclid"),
    "tiktok_ads": ("tiktok", "cpc", "ttclid"),
    "paid_search": ("bing", "cpc", None),
    "paid_social": ("linkedin", "paid_social", None),
    "display": ("dv360", "display", None),
    "email": ("newsletter", "email", None),
    "affiliate": ("awin", "affiliate", None),
    "referral": ("partner-blog.com", "referral", None),
    "organic_search": ("google", "organic", None),
    "organic_social": ("instagram", "social", None),
    "video": ("youtube", "video", None),
}
"""Per channel the ``(utm_source, utm_medium, click_id_column)`` written on its touchpoints."""

CHANNEL_CAMPAIGNS: dict[str, tuple[str, ...]] = {
    "direct": (),
    "google_ads": ("brand_search", "generic_search", "pmax_spring_sale"),
    "meta_ads": ("prospecting_lookalike", "retargeting_cart", "spring_sale"),
    "tiktok_ads": ("creator_spark_ads", "spring_sale"),
    "paid_search": ("bing_brand", "bing_generic"),
    "paid_social": ("b2b_prospecting", "retargeting"),
    "display": ("prospecting_banners", "retargeting_banners"),
    "email": ("weekly_newsletter", "abandoned_cart", "win_back"),
    "affiliate": ("cashback_partners", "coupon_sites"),
    "referral": (),
    "organic_search": (),
    "organic_social": (),
    "video": ("brand_awareness", "product_demo"),
}
"""Per channel the ``utm_campaign`` values (drawn uniformly); empty means ``utm_campaign`` is null."""

# Per channel: true effect beta (log-odds of the first touch), availability (share of users the
# channel can reach), intent loading (how availability rises with the user's conversion propensity),
# base log-weight of the channel mix and its drift along the journey (negative: early, positive: late).
_CHANNEL_PARAMS: dict[str, tuple[float, float, float, float, float]] = {
    #                  beta  avail intent base  drift
    "direct": (0.05, 1.00, 0.0, 1.0, 1.5),
    "google_ads": (0.80, 0.55, 0.5, 0.7, 1.0),
    "meta_ads": (0.50, 0.45, 0.0, 0.5, -1.0),
    "tiktok_ads": (0.30, 0.20, 0.0, 0.3, -1.5),
    "paid_search": (0.60, 0.25, 0.5, 0.2, 1.0),
    "paid_social": (0.35, 0.30, 0.0, 0.2, -1.5),
    "display": (0.00, 0.60, 0.0, 0.6, -2.5),
    "email": (0.70, 0.30, 0.8, 0.5, 2.0),
    "affiliate": (0.40, 0.10, 0.3, 0.0, 1.0),
    "referral": (0.30, 0.15, 0.0, -0.3, 0.0),
    "organic_search": (0.45, 0.60, 0.0, 0.6, 0.5),
    "organic_social": (0.00, 0.35, 0.0, 0.2, -1.0),
    "video": (0.25, 0.30, 0.0, 0.2, -2.5),
}

_BETA = np.array([_CHANNEL_PARAMS[c][0] for c in CHANNELS])
_AVAILABILITY = np.array([_CHANNEL_PARAMS[c][1] for c in CHANNELS])
_INTENT_LOADING = np.array([_CHANNEL_PARAMS[c][2] for c in CHANNELS])
_BASE_LOGIT = np.array([_CHANNEL_PARAMS[c][3] for c in CHANNELS])
_DRIFT = np.array([_CHANNEL_PARAMS[c][4] for c in CHANNELS])

_ALPHA = -3.2  # baseline log-odds of converting at a touch
_INTERCEPT_SD = 0.7  # user-level random intercept (intent)
_RHO = 0.5  # saturation: the k-th touch of a channel adds beta * rho**(k-1) to the log-odds


class ChannelParams(NamedTuple):
    """The generative parameters of one channel (docs/synthetic.md §3).

    Attributes
    ----------
    beta : float
        True per-touch effect: log-odds added by the channel's first touch in the stock.
    availability : float
        Share of (average-intent) users the channel can reach, in ``[0, 1]``; 0 removes the channel.
    intent_loading : float
        How availability rises with the user's intent (the selection effect).
    mix_weight : float
        Base log-weight of the channel in the channel mix.
    drift : float
        Drift of the log-weight along the journey (negative: early, positive: late).
    """

    beta: float
    availability: float
    intent_loading: float
    mix_weight: float
    drift: float


class Interaction(NamedTuple):
    """A pairwise interaction: ``beta`` is added to the log-odds while both channels are in the stock.

    The term is ``beta * [K_first > 0 and K_second > 0]`` (docs/synthetic.md §9); the order of the
    two channels does not matter.
    """

    first: str
    second: str
    beta: float


class OrderEffect(NamedTuple):
    """An order effect: touches of ``after`` add log-odds only when a touch of ``before`` precedes them.

    The term is ``beta * F(K_{before -> after})``, ``K_{before -> after}`` the touches of ``after`` in
    the stock that follow a touch of ``before`` in the stock, ``F`` the saturating response
    (docs/synthetic.md §9).
    """

    before: str
    after: str
    beta: float


class Follower(NamedTuple):
    """Co-occurrence: the touch right after a touch of ``lead`` is a touch of ``follower``.

    Each touch of ``lead`` that is not the user's last makes the next touch a touch of ``follower``
    with probability ``probability`` (whatever the mix had drawn there).
    """

    lead: str
    follower: str
    probability: float


def _finite(field: str, value: object) -> float:
    """``value`` as a float if it is a finite real number, else a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{field} must be a number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value):
        raise ConfigError(f"{field} must be finite, got {value!r}.")
    return float(value)


def _channel_name(field: str, value: object) -> str:
    """``value`` if it is one of :data:`CHANNELS`, else a ConfigError listing them."""
    if value not in CHANNELS:
        raise ConfigError(f"{field} must be one of {', '.join(CHANNELS)}; got {value!r}.")
    return str(value)


@dataclass(frozen=True)
class Scenario:
    """A preset of the generative model: channel parameters, hazard constants and extra terms.

    Pass one to :func:`generate` / :func:`iter_generate` as ``scenario=``; start from a preset with
    :func:`get_scenario` and change it with :meth:`with_channel` or :func:`dataclasses.replace`.
    Fields are validated on construction (``ConfigError`` naming the field).

    Attributes
    ----------
    name, description : str
        A label and a one-line description (free text for custom scenarios).
    channels : Mapping[str, ChannelParams]
        The parameters of every channel of :data:`CHANNELS` (read-only, in ``CHANNELS`` order).
        ``direct`` must have ``availability == 1`` (every user can be reached by some channel).
    alpha : float
        Baseline log-odds of converting at a touch.
    intercept_sd : float
        Spread (>= 0) of the users' intent, added to the baseline log-odds.
    rho : float
        Saturation ratio in ``(0, 1]``: the k-th touch of a channel in the stock adds
        ``beta * rho**(k-1)``; ``rho = 1`` makes the log-odds additive in touch counts.
    interactions : tuple[Interaction, ...]
        Pairwise interaction terms of the log-odds.
    orders : tuple[OrderEffect, ...]
        Order-effect terms of the log-odds.
    follower : Follower or None
        A channel that follows another one's touches (correlated channels), or None.

    Examples
    --------
    >>> custom = get_scenario("interaction").with_channel("email", beta=0.0)
    >>> custom.channels["email"].beta
    0.0
    """

    name: str
    description: str
    channels: Mapping[str, ChannelParams]
    alpha: float = _ALPHA
    intercept_sd: float = _INTERCEPT_SD
    rho: float = _RHO
    interactions: tuple[Interaction, ...] = ()
    orders: tuple[OrderEffect, ...] = ()
    follower: Follower | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.description, str):
            raise ConfigError(
                f"Scenario name and description must be strings, got {self.name!r}, {self.description!r}."
            )
        if not isinstance(self.channels, Mapping) or set(self.channels) != set(CHANNELS):
            got = sorted(self.channels) if isinstance(self.channels, Mapping) else self.channels
            raise ConfigError(f"Scenario.channels must map every channel of CHANNELS to a ChannelParams; got {got!r}.")
        channels = {}
        for c in CHANNELS:
            values = self.channels[c]
            if not isinstance(values, tuple) or len(values) != len(ChannelParams._fields):
                raise ConfigError(f"Scenario.channels[{c!r}] must be a ChannelParams, got {values!r}.")
            params = ChannelParams(
                *(_finite(f"channels[{c!r}].{f}", v) for f, v in zip(ChannelParams._fields, values, strict=True))
            )
            if not 0.0 <= params.availability <= 1.0:
                raise ConfigError(f"channels[{c!r}].availability must be in [0, 1], got {params.availability!r}.")
            channels[c] = params
        if channels["direct"].availability != 1.0:
            raise ConfigError(
                "channels['direct'].availability must be 1 (direct can reach every user, so every user has "
                f"an available channel), got {channels['direct'].availability!r}."
            )
        object.__setattr__(self, "channels", MappingProxyType(channels))
        object.__setattr__(self, "alpha", _finite("alpha", self.alpha))
        if _finite("intercept_sd", self.intercept_sd) < 0:
            raise ConfigError(f"intercept_sd must be >= 0, got {self.intercept_sd!r}.")
        object.__setattr__(self, "intercept_sd", float(self.intercept_sd))
        if not 0.0 < _finite("rho", self.rho) <= 1.0:
            raise ConfigError(f"rho must be in (0, 1] (1: no saturation), got {self.rho!r}.")
        object.__setattr__(self, "rho", float(self.rho))
        for field, kind in (("interactions", Interaction), ("orders", OrderEffect)):
            terms = []
            for term in getattr(self, field):
                if not isinstance(term, tuple) or len(term) != 3:
                    raise ConfigError(
                        f"{field} must hold {kind.__name__}(channel, channel, beta) tuples, got {term!r}."
                    )
                a, b = _channel_name(f"{field} channel", term[0]), _channel_name(f"{field} channel", term[1])
                if a == b:
                    raise ConfigError(f"{field} must pair two different channels, got {term!r}.")
                terms.append(kind(a, b, _finite(f"{field} beta", term[2])))
            object.__setattr__(self, field, tuple(terms))
        if self.follower is not None:
            term = self.follower
            if not isinstance(term, tuple) or len(term) != 3:
                raise ConfigError(f"follower must be a Follower(lead, follower, probability) or None, got {term!r}.")
            lead, follower = _channel_name("follower lead", term[0]), _channel_name("follower", term[1])
            if lead == follower:
                raise ConfigError(f"follower must differ from its lead, got {term!r}.")
            probability = _finite("follower probability", term[2])
            if not 0.0 <= probability <= 1.0:
                raise ConfigError(f"follower probability must be in [0, 1], got {probability!r}.")
            object.__setattr__(self, "follower", Follower(lead, follower, probability))

    def with_channel(self, channel: str, **changes: float) -> Scenario:
        """A copy with some of ``channel``'s :class:`ChannelParams` fields changed."""
        _channel_name("channel", channel)
        unknown = set(changes) - set(ChannelParams._fields)
        if unknown:
            raise ConfigError(
                f"unknown ChannelParams fields {sorted(unknown)}; valid: {', '.join(ChannelParams._fields)}."
            )
        return replace(self, channels={**self.channels, channel: self.channels[channel]._replace(**changes)})


def _default_scenario() -> Scenario:
    return Scenario(
        name="default",
        description="13 channels, saturating per-touch effects (rho 0.5), intent-driven selection, two zero-effect channels",
        channels={c: ChannelParams(*_CHANNEL_PARAMS[c]) for c in CHANNELS},
        alpha=_ALPHA,
        intercept_sd=_INTERCEPT_SD,
        rho=_RHO,
    )


def _preset_scenarios() -> dict[str, Scenario]:
    """The named presets (docs/synthetic.md §9)."""
    default = _default_scenario()
    unselected = replace(default, channels={c: p._replace(intent_loading=0.0) for c, p in default.channels.items()})
    additive = replace(
        unselected.with_channel("organic_social", availability=0.0),
        name="additive",
        description="12 channels, log-odds additive in per-channel touch counts (rho 1), no selection by intent",
        alpha=-3.4,
        rho=1.0,
    )
    late = replace(
        default.with_channel("email", beta=0.9, intent_loading=0.0, mix_weight=-1.0, drift=10.0),
        name="late_channel",
        description="email (effective) appears almost only in the last touches of a user's path",
    )
    reach = replace(
        default.with_channel("display", availability=0.97, mix_weight=1.6, drift=0.0),
        name="reach_no_effect",
        description="display reaches almost every user all along the path and has zero effect",
    )
    correlated = replace(
        default.with_channel("paid_search", availability=0.4, drift=0.0).with_channel("display", availability=0.02),
        name="correlated",
        description="display (zero effect) retargets paid_search (effective): it follows 95% of its touches",
        follower=Follower("paid_search", "display", 0.95),
    )
    interaction = replace(
        default.with_channel("meta_ads", beta=0.0).with_channel("google_ads", beta=0.0),
        name="interaction",
        description="meta_ads and google_ads have no effect alone, +1.5 log-odds while both are in the stock",
        interactions=(Interaction("meta_ads", "google_ads", 1.5),),
    )
    saturation = replace(
        default.with_channel("email", availability=0.5, mix_weight=1.5, drift=0.0),
        name="saturation",
        description="strong saturation (rho 0.2) and a frequent email: only the first touch or two of a channel count",
        rho=0.2,
    )
    order = replace(
        default.with_channel("video", availability=0.5).with_channel("paid_search", beta=0.0, availability=0.5),
        name="order_effect",
        description="paid_search helps (+1.0 per touch, saturating) only after a video touch in the stock",
        orders=(OrderEffect("video", "paid_search", 1.0),),
    )
    presets = [default, additive, late, reach, correlated, interaction, saturation, order]
    return {s.name: s for s in presets}


_PRESETS: dict[str, Scenario] = _preset_scenarios()

SCENARIOS: Mapping[str, str] = MappingProxyType({name: s.description for name, s in _PRESETS.items()})
"""The named scenarios of :func:`generate` (name -> one-line description); docs/synthetic.md §9."""


def get_scenario(name: str) -> Scenario:
    """The preset :class:`Scenario` called ``name`` (one of :data:`SCENARIOS`).

    Raises
    ------
    ConfigError
        If ``name`` is not a preset (the message lists them).
    """
    if name not in _PRESETS:
        raise ConfigError(f"scenario must be one of {', '.join(_PRESETS)} or a Scenario; got {name!r}.")
    return _PRESETS[name]
