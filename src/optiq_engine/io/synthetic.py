"""Seeded synthetic touchpoints and conversions with a known ground truth.

The generator simulates users who are touched by marketing channels over a period of ``days`` and who
convert according to a known per-touch hazard model in which every channel has a true effect
``beta_c``. Because the model is known, each channel's incremental contribution can be computed
exactly; it is returned in :attr:`SyntheticData.truth` so that attribution models can be scored
against it. The generative model and the definition of the truth are written down in
``docs/synthetic.md``. Named presets of the model (:data:`SCENARIOS`: additive effects, a late channel,
reach without effect, correlated channels, interactions, saturation, an order effect) are selected with
``scenario=``; a custom :class:`Scenario` can be passed instead (``docs/synthetic.md`` §9).

Everything is deterministic for a ``seed``: randomness is drawn per fixed block of users
(``numpy.random.SeedSequence([seed, block_index])``), never per batch, so :func:`iter_generate`
yields the very rows of :func:`generate`, whatever ``batch_users`` is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import ConfigError
from ..kernels._jit import jit, pjit, prange

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
    "SyntheticData",
    "generate",
    "get_scenario",
    "iter_generate",
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
    "direct":         (0.05, 1.00, 0.0, 1.0, 1.5),
    "google_ads":     (0.80, 0.55, 0.5, 0.7, 1.0),
    "meta_ads":       (0.50, 0.45, 0.0, 0.5, -1.0),
    "tiktok_ads":     (0.30, 0.20, 0.0, 0.3, -1.5),
    "paid_search":    (0.60, 0.25, 0.5, 0.2, 1.0),
    "paid_social":    (0.35, 0.30, 0.0, 0.2, -1.5),
    "display":        (0.00, 0.60, 0.0, 0.6, -2.5),
    "email":          (0.70, 0.30, 0.8, 0.5, 2.0),
    "affiliate":      (0.40, 0.10, 0.3, 0.0, 1.0),
    "referral":       (0.30, 0.15, 0.0, -0.3, 0.0),
    "organic_search": (0.45, 0.60, 0.0, 0.6, 0.5),
    "organic_social": (0.00, 0.35, 0.0, 0.2, -1.0),
    "video":          (0.25, 0.30, 0.0, 0.2, -2.5),
}  # fmt: skip

_BETA = np.array([_CHANNEL_PARAMS[c][0] for c in CHANNELS])
_AVAILABILITY = np.array([_CHANNEL_PARAMS[c][1] for c in CHANNELS])
_INTENT_LOADING = np.array([_CHANNEL_PARAMS[c][2] for c in CHANNELS])
_BASE_LOGIT = np.array([_CHANNEL_PARAMS[c][3] for c in CHANNELS])
_DRIFT = np.array([_CHANNEL_PARAMS[c][4] for c in CHANNELS])

_BLOCK_USERS = 1 << 16  # users per random block; fixed, never derived from batch_users
_N_CHUNKS = 64  # work chunks of the parallel kernels (fixed, so results never depend on threads)
_MAX_TOUCHES_PER_USER = 5_000
_MAX_TOUCHPOINTS_PER_USER_MEAN = 100.0
_ACTIVITY_SIGMA = 1.0  # log-normal spread of a user's touch rate
_GAP_MEDIAN_DAYS = 2.0  # median of the users' median inter-arrival time
_PACE_SIGMA = 0.6  # spread of the users' median inter-arrival times
_GAP_SIGMA = 1.2  # spread of one user's inter-arrival times
_MIN_GAP_US = 1_000_000  # touches of a user are at least 1 s apart (unless compressed)
_ALPHA = -3.2  # baseline log-odds of converting at a touch
_INTERCEPT_SD = 0.7  # user-level random intercept (intent)
_RHO = 0.5  # saturation: the k-th touch of a channel adds beta * rho**(k-1) to the log-odds
_MAX_DELAY_US = 6 * 3_600_000_000  # a conversion follows its touch by at most 6 hours
_MEMORY_US = 30 * 86_400_000_000 - _MAX_DELAY_US  # touches older than this are forgotten
_DELAY_MEDIAN_US = 10 * 60_000_000  # median conversion delay: 10 minutes
_DELAY_SIGMA = 1.5
_VALUE_MEDIAN_MICROS = 50_000_000  # median conversion value: 50 currency units
_VALUE_SIGMA = 0.8
_CENT_MICROS = 10_000  # values are whole cents
_CONVERSION_NAME = "purchase"
_CLICK_PREFIX = {"gclid": "Cj0KCQiA", "fbclid": "IwAR", "ttclid": "E.C.P."}
_ID_WIDTH = 12  # digits of touchpoint and conversion numbers (more only beyond 1e12 touchpoints)
_USER_ID_WIDTH = 9  # digits of user numbers (more only beyond 1e9 users)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_DAY = 86_400_000_000


# ---------------------------------------------------------------------------------------------
# scenarios: named presets of the generative model
# ---------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class SyntheticData:
    """A synthetic data set and its ground truth.

    Attributes
    ----------
    touchpoints : polars.DataFrame
        ``touchpoint_id``, ``anon_id``, ``occurred_at`` (``Datetime("us", "UTC")``), ``channel``
        (``Enum(CHANNELS)``), ``organization_id``, ``site_id``, ``utm_source``, ``utm_medium``,
        ``utm_campaign``, ``gclid``, ``fbclid``, ``ttclid``; sorted by user, then time.
    conversions : polars.DataFrame
        ``conversion_id``, ``anon_id``, ``occurred_at``, ``value_micros`` (Int64, > 0), ``name``,
        ``organization_id``, ``site_id``; sorted by user, then time.
    truth : polars.DataFrame
        One row per channel of :data:`CHANNELS`: ``channel``, ``beta`` (true per-touch effect),
        ``reach`` (share of the users touched by the channel), ``touches``,
        ``incremental_conversions`` (expected conversions lost without the channel) and
        ``true_share`` (incremental conversions normalised to sum 1).
    seed : int
        The seed the data was generated from.
    """

    touchpoints: pl.DataFrame
    conversions: pl.DataFrame
    truth: pl.DataFrame
    seed: int


_INTERACTION, _ORDER = 0, 1  # kinds of the extra log-odds terms in the kernels


@dataclass(frozen=True)
class _Model:
    """A scenario as kernel inputs (arrays over ``CHANNELS``, channel codes for the terms)."""

    beta: np.ndarray  # float64[C]
    availability: np.ndarray  # float64[C]
    intent_loading: np.ndarray  # float64[C]
    base_logit: np.ndarray  # float64[C]
    drift: np.ndarray  # float64[C]
    alpha: float
    intercept_sd: float
    rho: float
    terms: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # kind, first, second (int64[T]), beta (float64[T])
    follower: tuple[int, int, float]  # (lead, follower, probability); lead -1: none

    @classmethod
    def of(cls, scenario: Scenario) -> _Model:
        """Compile ``scenario``."""
        table = np.array([scenario.channels[c] for c in CHANNELS], dtype=np.float64)
        code = {c: i for i, c in enumerate(CHANNELS)}
        terms = [(_INTERACTION, code[a], code[b], beta) for a, b, beta in scenario.interactions]
        terms += [(_ORDER, code[a], code[b], beta) for a, b, beta in scenario.orders]
        follower = scenario.follower
        return cls(
            beta=np.ascontiguousarray(table[:, 0]),
            availability=np.ascontiguousarray(table[:, 1]),
            intent_loading=np.ascontiguousarray(table[:, 2]),
            base_logit=np.ascontiguousarray(table[:, 3]),
            drift=np.ascontiguousarray(table[:, 4]),
            alpha=scenario.alpha,
            intercept_sd=scenario.intercept_sd,
            rho=scenario.rho,
            terms=_term_arrays(terms),
            follower=(-1, -1, 0.0)
            if follower is None
            else (code[follower.lead], code[follower.follower], follower.probability),
        )


def _term_arrays(terms: list[tuple[int, int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(kind, first, second, beta)`` arrays of the extra log-odds terms (see :func:`_term_value`)."""
    return (
        np.array([t[0] for t in terms], np.int64),
        np.array([t[1] for t in terms], np.int64),
        np.array([t[2] for t in terms], np.int64),
        np.array([t[3] for t in terms], np.float64),
    )


@dataclass(frozen=True)
class _Params:
    """Validated generator arguments."""

    n_users: int
    touchpoints_per_user: float
    days: int
    n_organizations: int
    sites_per_organization: int
    seed: int
    start_us: int
    scenario: Scenario
    model: _Model

    @property
    def window_us(self) -> int:
        """Length of the simulated period in microseconds."""
        return self.days * _US_PER_DAY


@dataclass(frozen=True)
class _Block:
    """One simulated block of users (local indices; see :func:`_simulate_block`)."""

    first_user: int
    touch_offsets: np.ndarray  # int64[B + 1]
    conversion_offsets: np.ndarray  # int64[B + 1]
    site: np.ndarray  # int64[B], global site code o * sites_per_organization + s
    ts: np.ndarray  # int64[N], microseconds since start
    channel: np.ndarray  # int8[N]
    campaign: np.ndarray  # int32[N], index into _CAMPAIGN_NAMES or -1
    conversion_ts: np.ndarray  # int64[K]
    conversion_value: np.ndarray  # int64[K]
    channel_touches: np.ndarray  # int64[B, C]
    incremental: np.ndarray  # float64[B, C]
    touch_base: int  # global number of the block's first touchpoint
    conversion_base: int  # global number of the block's first conversion

    @property
    def n_users(self) -> int:
        """Number of users in the block."""
        return self.touch_offsets.size - 1


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


def generate(
    *,
    n_users: int = 200_000,
    touchpoints_per_user: float = 5.0,
    days: int = 90,
    n_organizations: int = 1,
    sites_per_organization: int = 1,
    seed: int = 0,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    scenario: str | Scenario = "default",
) -> SyntheticData:
    """Generate a synthetic data set with its ground truth.

    Parameters
    ----------
    n_users : int
        Number of users (each has at least one touchpoint).
    touchpoints_per_user : float
        Mean number of touchpoints per user, in ``[1, 100]``.
    days : int
        Length of the period; every timestamp lies in ``[start, start + days)``.
    n_organizations, sites_per_organization : int
        Every user belongs to one organization (``org_1`` ...) and one of its sites (``site_1_1`` ...).
    seed : int
        Non-negative seed; the same seed gives the same frames, bit for bit.
    start : datetime
        Timezone-aware start of the period.
    scenario : str or Scenario
        The generative model: a name of :data:`SCENARIOS` (``"default"``: the model of
        ``docs/synthetic.md`` §2-3) or a custom :class:`Scenario`.

    Returns
    -------
    SyntheticData
        The touchpoints, the conversions and the truth for all users.

    Raises
    ------
    ConfigError
        If an argument is out of range (the message names it).

    Notes
    -----
    The model and the exact definition of the truth are in ``docs/synthetic.md``. The default sizes
    give about 1M touchpoints and 0.1M conversions.

    Examples
    --------
    >>> data = generate(n_users=1_000, seed=1)
    >>> round(data.truth["true_share"].sum(), 12)
    1.0
    """
    params = _validate(
        n_users=n_users,
        touchpoints_per_user=touchpoints_per_user,
        days=days,
        n_organizations=n_organizations,
        sites_per_organization=sites_per_organization,
        seed=seed,
        start=start,
        scenario=scenario,
    )
    return next(_iter_batches(params, params.n_users))


def iter_generate(
    *,
    batch_users: int = 1_000_000,
    n_users: int = 200_000,
    touchpoints_per_user: float = 5.0,
    days: int = 90,
    n_organizations: int = 1,
    sites_per_organization: int = 1,
    seed: int = 0,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    scenario: str | Scenario = "default",
) -> Iterator[SyntheticData]:
    """Generate the data set of :func:`generate` in batches of users.

    Parameters
    ----------
    batch_users : int
        Users per batch (the last batch may be smaller); a user never spans two batches.
    n_users, touchpoints_per_user, days, n_organizations, sites_per_organization, seed, start, scenario
        As for :func:`generate`.

    Returns
    -------
    Iterator[SyntheticData]
        Batches whose concatenated frames equal those of ``generate(...)`` with the same arguments
        (same ids, rows and order); each batch's ``truth`` is computed over the batch's users.

    Raises
    ------
    ConfigError
        If an argument is out of range (raised by this call, before any batch is produced).

    Examples
    --------
    >>> sizes = [b.touchpoints.height for b in iter_generate(batch_users=400, n_users=1_000)]
    >>> len(sizes)
    3
    """
    params = _validate(
        n_users=n_users,
        touchpoints_per_user=touchpoints_per_user,
        days=days,
        n_organizations=n_organizations,
        sites_per_organization=sites_per_organization,
        seed=seed,
        start=start,
        scenario=scenario,
    )
    _check_int("batch_users", batch_users, 1)
    return _iter_batches(params, batch_users)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def _check_int(field: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int ``>= minimum``, else raise a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{field} must be an int >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ConfigError(f"{field} must be >= {minimum}, got {value!r}.")
    return int(value)


def _validate(
    *,
    n_users: int,
    touchpoints_per_user: float,
    days: int,
    n_organizations: int,
    sites_per_organization: int,
    seed: int,
    start: datetime,
    scenario: str | Scenario,
) -> _Params:
    """Check the generator arguments and return them normalised."""
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    elif not isinstance(scenario, Scenario):
        raise ConfigError(
            f"scenario must be one of {', '.join(SCENARIOS)} or a Scenario, got {scenario!r} ({type(scenario).__name__})."
        )
    tpu = touchpoints_per_user
    if isinstance(tpu, bool) or not isinstance(tpu, int | float | np.integer | np.floating):
        raise ConfigError(f"touchpoints_per_user must be a number, got {tpu!r} ({type(tpu).__name__}).")
    if not (1.0 <= float(tpu) <= _MAX_TOUCHPOINTS_PER_USER_MEAN):
        raise ConfigError(
            f"touchpoints_per_user must be in [1, {_MAX_TOUCHPOINTS_PER_USER_MEAN:g}] (every user has at "
            f"least one touchpoint), got {tpu!r}."
        )
    if not isinstance(start, datetime):
        raise ConfigError(f"start must be a datetime, got {start!r} ({type(start).__name__}).")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ConfigError(f"start must be timezone-aware (e.g. tzinfo=UTC), got naive {start!r}.")
    days = _check_int("days", days, 1)
    try:
        start.astimezone(UTC) + timedelta(days=days)
    except OverflowError:
        raise ConfigError(
            f"start + days must not pass the year 9999, got start={start!r} with days={days}; pick an earlier start."
        ) from None
    return _Params(
        n_users=_check_int("n_users", n_users, 1),
        touchpoints_per_user=float(tpu),
        days=days,
        n_organizations=_check_int("n_organizations", n_organizations, 1),
        sites_per_organization=_check_int("sites_per_organization", sites_per_organization, 1),
        seed=_check_int("seed", seed, 0),
        start_us=(start.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1),
        scenario=scenario,
        model=_Model.of(scenario),
    )


# ---------------------------------------------------------------------------------------------
# batching
# ---------------------------------------------------------------------------------------------


def _iter_batches(params: _Params, batch_users: int) -> Iterator[SyntheticData]:
    """Yield the batches ``[0, batch_users), [batch_users, 2 * batch_users), ...`` of users.

    Blocks are simulated in order, each exactly once; the global numbers of a block's first
    touchpoint and conversion are the running totals of the blocks before it.
    """
    current: _Block | None = None
    touch_base = conversion_base = 0
    for lo in range(0, params.n_users, batch_users):
        hi = min(lo + batch_users, params.n_users)
        parts = []
        for block_index in range(lo // _BLOCK_USERS, (hi - 1) // _BLOCK_USERS + 1):
            if current is None or current.first_user != block_index * _BLOCK_USERS:
                current = _simulate_block(params, block_index, touch_base, conversion_base)
                touch_base += int(current.touch_offsets[-1])
                conversion_base += int(current.conversion_offsets[-1])
            first = current.first_user
            parts.append((current, max(lo - first, 0), min(hi - first, current.n_users)))
        yield _build_batch(params, parts)


# ---------------------------------------------------------------------------------------------
# simulation of one block
# ---------------------------------------------------------------------------------------------


def _block_rng(seed: int, block_index: int) -> np.random.Generator:
    """The random generator of one block: PCG64 seeded by ``SeedSequence([seed, block_index])``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, block_index])))


def _simulate_block(params: _Params, block_index: int, touch_base: int, conversion_base: int) -> _Block:
    """Simulate the users ``block_index * _BLOCK_USERS ...`` (at most ``_BLOCK_USERS`` of them).

    The random numbers are drawn in a fixed order from the block's own generator, so a block's
    content depends only on ``(params, block_index)``.
    """
    rng = _block_rng(params.seed, block_index)
    first_user = block_index * _BLOCK_USERS
    n = min(_BLOCK_USERS, params.n_users - first_user)
    counts = _draw_touch_counts(rng, n, params.touchpoints_per_user)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    organization = rng.integers(0, params.n_organizations, n)
    site = organization * params.sites_per_organization + rng.integers(0, params.sites_per_organization, n)
    intent = rng.standard_normal(n)
    model = params.model
    available = _draw_availability(rng, intent, model.availability, model.intent_loading)
    ts = _draw_times(rng, offsets, params.window_us)
    channel = _draw_channels(offsets, available, rng.random(int(offsets[-1])), model.base_logit, model.drift)
    lead, follower, probability = model.follower
    if lead >= 0:  # drawn only by scenarios with a follower, so the other scenarios' streams are unchanged
        channel = _apply_follower(offsets, channel, rng.random(int(offsets[-1])), lead, follower, probability)
    campaign = _draw_campaigns(rng, channel)
    converted, incremental = _simulate_conversions(
        offsets, ts, channel, model.alpha + model.intercept_sd * intent, rng.random(int(offsets[-1])),
        model.beta, model.rho, _MEMORY_US, model.terms,
    )  # fmt: skip
    touch_index = np.flatnonzero(converted)
    conversion_ts, conversion_value = _draw_conversion_details(rng, offsets, ts, touch_index, params.window_us)
    conversion_counts = np.add.reduceat(converted.astype(np.int64), offsets[:-1]) if n else np.zeros(0, np.int64)
    conversion_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(conversion_counts, out=conversion_offsets[1:])
    return _Block(
        first_user=first_user,
        touch_offsets=offsets,
        conversion_offsets=conversion_offsets,
        site=site,
        ts=ts,
        channel=channel,
        campaign=campaign,
        conversion_ts=conversion_ts,
        conversion_value=conversion_value,
        channel_touches=_channel_touches(offsets, channel, len(CHANNELS)),
        incremental=incremental,
        touch_base=touch_base,
        conversion_base=conversion_base,
    )


def _draw_touch_counts(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Touches per user: ``1 + Poisson(lambda)``, ``lambda`` log-normal with mean ``mean - 1``."""
    z = rng.standard_normal(n)
    rate = (mean - 1.0) * np.exp(_ACTIVITY_SIGMA * z - 0.5 * _ACTIVITY_SIGMA**2)
    return np.minimum(1 + rng.poisson(rate), _MAX_TOUCHES_PER_USER).astype(np.int64)


def _draw_availability(
    rng: np.random.Generator,
    intent: np.ndarray,
    availability: np.ndarray = _AVAILABILITY,
    intent_loading: np.ndarray = _INTENT_LOADING,
) -> np.ndarray:
    """Which channels can reach each user: ``P = sigmoid(logit(a_c) + g_c * intent)``; direct always.

    ``a_c = 1`` gives ``P = 1`` and ``a_c = 0`` gives ``P = 0`` (infinite logits), whatever the intent.
    """
    with np.errstate(divide="ignore"):
        logit = np.log(availability) - np.log1p(-availability)
    with np.errstate(invalid="ignore"):  # inf + 0 * intent
        shifted = logit[None, :] + intent_loading[None, :] * intent[:, None]
    shifted = np.where(np.isinf(logit)[None, :], logit[None, :], shifted)
    probability = 1.0 / (1.0 + np.exp(-shifted))
    return rng.random((intent.size, len(CHANNELS))) < probability


def _draw_times(rng: np.random.Generator, offsets: np.ndarray, window_us: int) -> np.ndarray:
    """Touch times in microseconds since ``start``: log-normal gaps placed at a uniform offset."""
    n_users = offsets.size - 1
    pace = np.log(_GAP_MEDIAN_DAYS * _US_PER_DAY) + _PACE_SIGMA * rng.standard_normal(n_users)
    user_of_touch = np.repeat(np.arange(n_users), np.diff(offsets))
    gaps = np.exp(pace[user_of_touch] + _GAP_SIGMA * rng.standard_normal(int(offsets[-1])))
    return _place_touches(offsets, gaps, rng.random(n_users), window_us, float(_MIN_GAP_US))


def _draw_campaigns(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """Campaign code per touch: uniform over the channel's campaigns, -1 when it has none."""
    sizes = np.array([len(CHANNEL_CAMPAIGNS[c]) for c in CHANNELS])
    firsts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    u = rng.random(channel.size)
    size = sizes[channel]
    campaign = firsts[channel] + np.minimum((u * size).astype(np.int64), np.maximum(size - 1, 0))
    return np.where(size > 0, campaign, -1).astype(np.int32)


def _draw_conversion_details(
    rng: np.random.Generator, offsets: np.ndarray, ts: np.ndarray, touch_index: np.ndarray, window_us: int
) -> tuple[np.ndarray, np.ndarray]:
    """Time and value of each conversion (``touch_index``: its triggering touch, sorted).

    The time is the touch's time plus a log-normal delay capped at ``_MAX_DELAY_US``, at half the gap
    to the user's next touch and at the end of the period; the value is log-normal, in whole cents.
    """
    k = touch_index.size
    delay = np.exp(np.log(_DELAY_MEDIAN_US) + _DELAY_SIGMA * rng.standard_normal(k))
    value = np.exp(np.log(_VALUE_MEDIAN_MICROS / _CENT_MICROS) + _VALUE_SIGMA * rng.standard_normal(k))
    is_last = np.zeros(ts.size + 1, bool)
    is_last[offsets[1:] - 1] = True
    nxt = np.minimum(touch_index + 1, ts.size - 1) if ts.size else touch_index
    cap = np.where(is_last[touch_index], window_us - 1 - ts[touch_index], (ts[nxt] - ts[touch_index]) // 2)
    delay_us = np.minimum(np.minimum(delay, float(_MAX_DELAY_US)).astype(np.int64), cap)
    value_micros = np.maximum(np.rint(value), 1.0).astype(np.int64) * _CENT_MICROS
    return ts[touch_index] + delay_us, value_micros


def _channel_touches(offsets: np.ndarray, channel: np.ndarray, n_channels: int) -> np.ndarray:
    """Touch count per (user, channel) as an int64[B, C] matrix."""
    n_users = offsets.size - 1
    user_of_touch = np.repeat(np.arange(n_users), np.diff(offsets))
    flat = np.bincount(user_of_touch * n_channels + channel, minlength=n_users * n_channels)
    return flat.reshape(n_users, n_channels).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# kernels (numpy arrays in, numpy arrays out; no strings, no config objects)
# ---------------------------------------------------------------------------------------------


@jit
def _place_touches(offsets, gaps, start_fraction, window_us, min_gap):
    """Place each user's touches in ``[0, window_us)``.

    Parameters
    ----------
    offsets : int64[B + 1]
        Touch range of each user.
    gaps : float64[N]
        Gap before each touch in microseconds (the first gap of each user is not used).
    start_fraction : float64[B]
        Uniform draws in [0, 1) placing the user's span inside the period.
    window_us : int
        Length of the period.
    min_gap : float
        Gaps shorter than this are raised to it before any compression.

    Returns
    -------
    int64[N]
        Strictly increasing times per user, all in ``[0, window_us - 1]``. A span longer than the
        period (minus one microsecond per touch) is compressed by a common factor.
    """
    ts = np.empty(gaps.size, np.int64)
    room = window_us - 1
    for u in range(offsets.size - 1):
        lo, hi = offsets[u], offsets[u + 1]
        total = 0.0
        for j in range(lo + 1, hi):
            total += max(gaps[j], min_gap)
        budget = room - (hi - lo)
        scale = 1.0 if total <= budget else budget / total
        t = 0
        ts[lo] = 0
        for j in range(lo + 1, hi):
            t += max(np.int64(max(gaps[j], min_gap) * scale), 1)
            ts[j] = t
        offset = min(np.int64(start_fraction[u] * (room - t + 1)), room - t)
        for j in range(lo, hi):
            ts[j] += offset
    return ts


@jit
def _chunk_bounds(offsets, n_chunks):
    """User boundaries of ``n_chunks`` contiguous chunks holding about equal numbers of touches.

    Returns int64[k + 1] with ``k <= n_chunks``; the chunks depend only on ``offsets``, so results of
    the parallel kernels do not depend on the number of threads.
    """
    n_users = offsets.size - 1
    total = offsets[n_users]
    bounds = np.empty(n_chunks + 1, np.int64)
    bounds[0] = 0
    k = 1
    for chunk in range(1, n_chunks):
        u = np.searchsorted(offsets, total * chunk // n_chunks)
        if bounds[k - 1] < u < n_users:
            bounds[k] = u
            k += 1
    bounds[k] = n_users
    return bounds[: k + 1]


@pjit
def _draw_channels(offsets, available, uniforms, base_logit, drift):
    """Channel of each touch, drawn from the user's available channels.

    Parameters
    ----------
    offsets : int64[B + 1]
        Touch range of each user.
    available : bool[B, C]
        Channels that can reach the user (channel 0, direct, always can).
    uniforms : float64[N]
        One uniform draw per touch.
    base_logit, drift : float64[C]
        Touch ``j`` of ``n`` picks channel ``c`` with probability proportional to
        ``exp(base_logit[c] + drift[c] * ((j + 0.5) / n - 0.5))`` among the available channels.

    Returns
    -------
    int8[N]
        Channel codes (indices into ``CHANNELS``).
    """
    n_channels = base_logit.size
    out = np.empty(uniforms.size, np.int8)
    bounds = _chunk_bounds(offsets, _N_CHUNKS)
    for chunk in prange(bounds.size - 1):
        cumulative = np.empty(n_channels)
        for u in range(bounds[chunk], bounds[chunk + 1]):
            lo = offsets[u]
            n = offsets[u + 1] - lo
            for j in range(n):
                r = (j + 0.5) / n - 0.5
                total = 0.0
                for c in range(n_channels):
                    if available[u, c]:
                        total += math.exp(base_logit[c] + drift[c] * r)
                    cumulative[c] = total
                target = uniforms[lo + j] * total
                pick = 0
                for c in range(n_channels):
                    if available[u, c]:
                        pick = c
                        if target < cumulative[c]:
                            break
                out[lo + j] = pick
    return out


@jit
def _apply_follower(offsets, channel, uniforms, lead, follower, probability):
    """Channels after the follower rule: the touch after a ``lead`` touch becomes ``follower``.

    Touch ``j + 1`` of a user (if any) is set to ``follower`` when touch ``j`` is a ``lead`` touch (after
    this rule) and ``uniforms[j + 1] < probability``. Returns a new int8[N] array.
    """
    out = channel.copy()
    for u in range(offsets.size - 1):
        for j in range(offsets[u] + 1, offsets[u + 1]):
            if out[j - 1] == lead and uniforms[j] < probability:
                out[j] = follower
    return out


@jit
def _sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))``."""
    return 1.0 / (1.0 + math.exp(-x))


@jit
def _window_start(ts, a, j, memory_us):
    """Advance ``a`` to the first touch with ``ts > ts[j] - memory_us`` (``a`` only moves forward)."""
    while ts[a] <= ts[j] - memory_us:
        a += 1
    return a


@jit
def _term_value(kind, first, second, beta, lo, hi, chan, counts, saturation):
    """The log-odds of one extra term over the stock ``chan[lo:hi]`` (``counts``: its channel counts).

    ``_INTERACTION``: ``beta`` if both ``first`` and ``second`` are in the stock, else 0.
    ``_ORDER``: ``beta * saturation[k]``, ``k`` the touches of ``second`` in the stock that come after
    a touch of ``first`` in the stock.
    """
    if kind == _INTERACTION:
        return beta if counts[first] > 0 and counts[second] > 0 else 0.0
    k = 0
    seen = False
    for i in range(lo, hi):
        if chan[i] == first:
            seen = True
        elif seen and chan[i] == second:
            k += 1
    return beta * saturation[k]


@jit
def _realise_path(lo, hi, ts, chan, base, beta, saturation, memory_us, terms, decision, converted, counts):
    """Simulate one user's conversions; mark the touches that trigger one in ``converted``.

    ``counts`` (int64[C], zeros on entry and on exit) holds the touches per channel of the stock
    ``[first, j]``: the touches after the last conversion and within ``memory_us`` of touch ``j``.
    ``saturation[k] = 1 + rho + ... + rho**(k-1)``. Touch ``j`` converts when
    ``decision[j] < sigmoid(base + sum_c beta[c] * saturation[counts[c]] + extra terms)``, the terms
    ``(kind, first, second, beta)`` as in :func:`_term_value`.
    """
    kind, term_first, term_second, term_beta = terms
    a = lo
    first = lo
    for j in range(lo, hi):
        counts[chan[j]] += 1
        a = _window_start(ts, a, j, memory_us)
        while first < a:
            counts[chan[first]] -= 1
            first += 1
        logit = base
        for c in range(beta.size):
            logit += beta[c] * saturation[counts[c]]
        for t in range(kind.size):
            logit += _term_value(
                kind[t], term_first[t], term_second[t], term_beta[t], first, j + 1, chan, counts, saturation
            )
        if decision[j] < _sigmoid(logit):
            converted[j] = True
            for i in range(first, j + 1):
                counts[chan[i]] -= 1
            first = j + 1
    for i in range(first, hi):
        counts[chan[i]] -= 1


@jit
def _expected_conversions(
    lo, hi, ts, chan, base, beta, removed, starts, n_removed, gain, saturation, memory_us, terms, scratch
):
    """Exact expected conversions of one user, as is and with each channel of ``removed`` muted.

    A dynamic programme over the state "index of the last conversion so far", run for all scenarios
    at once: row ``r = 0`` is the actual model, row ``r >= 1`` the model in which channel
    ``removed[r - 1]`` adds nothing to the log-odds: its own term and every extra term involving it
    are dropped (its touches stay decision points).
    ``prob[s - lo, r]`` is the probability that the last conversion happened at touch ``s``;
    ``free[r]`` collects "no conversion yet" and every state older than the memory window (they give
    the same hazard). At touch ``j`` the state ``s`` has the hazard of the touches ``(s, j]`` in the
    window, computed by sweeping ``i = j, j - 1, ..., a`` and adding touch ``i`` to the stock; the
    extra terms are updated as the stock grows (an interaction switches on when its second channel
    enters, an order term ``first -> second`` counts the touches of ``second`` after the earliest
    touch of ``first`` so far, i.e. after any touch of ``first`` in the stock).
    Row ``r`` equals row 0 until the first touch of its channel, ``starts[r - 1]`` (every term that
    involves the channel is 0 before it): it is copied from row 0 there and only then evolved
    (``starts`` ascending).

    Parameters
    ----------
    lo, hi : int
        The user's touch range.
    ts, chan : int64[N], int8[N]
        Touch times (strictly increasing within the user) and channels.
    base : float
        ``alpha + intercept`` of the user.
    beta : float64[C]
        True channel effects.
    removed, starts : int64[C]
        Channels to mute, one scenario each, and the index of their first touch; the first
        ``n_removed`` entries are used, in ascending order of ``starts``.
    gain, saturation : float64[max_n + 1]
        ``gain[k] = rho**k``; ``saturation[k] = gain[0] + ... + gain[k - 1]``.
    memory_us : int
        Touches older than this are forgotten.
    terms : tuple
        ``(kind int64[T], first int64[T], second int64[T], beta float64[T])``: the extra log-odds
        terms (see :func:`_term_value`).
    scratch : tuple
        ``(prob float64[>= hi - lo, C + 1], free float64[C + 1], acc float64[C + 1], kcount int64[C],
        kstamp int64[C], out float64[C + 1], term_value float64[T])``; ``out[r]`` receives the
        expected conversions of row r.
    """
    prob, free, acc, kcount, kstamp, out, term_value = scratch
    kind, term_first, term_second, term_beta = terms
    n_terms = kind.size
    for s in range(hi - lo):
        prob[s, 0] = 0.0
    free[0] = 1.0
    out[0] = 0.0
    for c in range(kstamp.size):
        kstamp[c] = -1
    rows = 1
    merged = lo
    a = lo
    for j in range(lo, hi):
        a = _window_start(ts, a, j, memory_us)
        while merged < a:
            for r in range(rows):
                free[r] += prob[merged - lo, r]
                prob[merged - lo, r] = 0.0
            merged += 1
        while rows <= n_removed and starts[rows - 1] == j:
            for s in range(merged - lo, j - lo):
                prob[s, rows] = prob[s, 0]
            free[rows] = free[0]
            out[rows] = out[0]
            rows += 1
        for r in range(rows):
            acc[r] = 0.0
        for t in range(n_terms):
            term_value[t] = 0.0
        logit = base
        for i in range(j, a - 1, -1):
            c = chan[i]
            if kstamp[c] != j:
                kstamp[c] = j
                kcount[c] = 0
            logit += beta[c] * gain[kcount[c]]
            kcount[c] += 1
            total = logit
            for t in range(n_terms):
                if kind[t] == _INTERACTION:
                    if (
                        (c == term_first[t] or c == term_second[t])
                        and kstamp[term_first[t]] == j
                        and kstamp[term_second[t]] == j
                    ):
                        term_value[t] = term_beta[t]
                elif c == term_first[t]:
                    k = kcount[term_second[t]] if kstamp[term_second[t]] == j else 0
                    term_value[t] = term_beta[t] * saturation[k]
                total += term_value[t]
            p_all = _sigmoid(total)
            if i > a:
                s = i - 1 - lo
                acc[0] += prob[s, 0] * p_all
                prob[s, 0] *= 1.0 - p_all
                for r in range(1, rows):
                    p = _muted_hazard(
                        removed[r - 1], j, total, p_all, beta, kcount, kstamp, saturation, terms, term_value
                    )
                    acc[r] += prob[s, r] * p
                    prob[s, r] *= 1.0 - p
            else:
                acc[0] += free[0] * p_all
                free[0] *= 1.0 - p_all
                for r in range(1, rows):
                    p = _muted_hazard(
                        removed[r - 1], j, total, p_all, beta, kcount, kstamp, saturation, terms, term_value
                    )
                    acc[r] += free[r] * p
                    free[r] *= 1.0 - p
        for r in range(rows):
            prob[j - lo, r] = acc[r]
            out[r] += acc[r]


@jit
def _muted_hazard(d, j, logit, p_all, beta, kcount, kstamp, saturation, terms, term_value):
    """The hazard of the current stock with channel ``d``'s own term and every term involving it removed.

    ``p_all`` (the unmuted hazard) is returned as is when ``d`` is not in the stock: then none of
    those terms contributes.
    """
    if kstamp[d] != j:
        return p_all
    x = logit - beta[d] * saturation[kcount[d]]
    term_first, term_second = terms[1], terms[2]
    for t in range(term_first.size):
        if term_first[t] == d or term_second[t] == d:
            x -= term_value[t]
    return _sigmoid(x)


@pjit
def _simulate_conversions(offsets, ts, chan, base, decision, beta, rho, memory_us, terms):
    """Realised conversions, and the exact expected conversions each channel adds.

    Parameters
    ----------
    offsets : int64[B + 1]
        Touch range of each user; touches sorted by time within a user.
    ts : int64[N]
        Touch times (strictly increasing within a user).
    chan : int8[N]
        Channel codes.
    base : float64[B]
        ``alpha + intercept`` of each user.
    decision : float64[N]
        Uniform draws: touch ``j`` converts when ``decision[j] < p_j``.
    beta : float64[C]
        True channel effects.
    rho : float
        Saturation ratio in (0, 1].
    memory_us : int
        Touches older than this (relative to the decision) are forgotten.
    terms : tuple
        ``(kind int64[T], first int64[T], second int64[T], beta float64[T])``: extra log-odds terms
        (interactions and order effects, see :func:`_term_value`).

    Returns
    -------
    converted : bool[N]
        Whether touch ``j`` triggered a conversion.
    incremental : float64[B, C]
        ``E[conversions] - E[conversions | channel c muted]`` of each user, muting ``c`` dropping its
        own term and every extra term involving it; exactly 0 when the user has no touch of ``c``, or
        when ``beta[c] == 0`` and no extra term pairs ``c`` with another channel the user touched.
    """
    n_channels = beta.size
    kind, term_first, term_second, term_beta = terms
    max_touches = 0
    for u in range(offsets.size - 1):
        max_touches = max(max_touches, offsets[u + 1] - offsets[u])
    gain = np.empty(max_touches + 1)
    saturation = np.empty(max_touches + 1)
    acc = 0.0
    for k in range(max_touches + 1):
        gain[k] = rho**k
        saturation[k] = acc
        acc += gain[k]
    converted = np.zeros(ts.size, np.bool_)
    incremental = np.zeros((offsets.size - 1, n_channels))
    bounds = _chunk_bounds(offsets, _N_CHUNKS)
    for chunk in prange(bounds.size - 1):
        longest = 1
        for u in range(bounds[chunk], bounds[chunk + 1]):
            longest = max(longest, offsets[u + 1] - offsets[u])
        scratch = (
            np.empty((longest, n_channels + 1)),
            np.empty(n_channels + 1),
            np.empty(n_channels + 1),
            np.empty(n_channels, np.int64),
            np.empty(n_channels, np.int64),
            np.empty(n_channels + 1),
            np.empty(kind.size),
        )
        counts = np.zeros(n_channels, np.int64)
        touched = np.zeros(n_channels, np.bool_)
        listed = np.zeros(n_channels, np.bool_)
        removed = np.empty(n_channels, np.int64)
        starts = np.empty(n_channels, np.int64)
        for u in range(bounds[chunk], bounds[chunk + 1]):
            lo, hi = offsets[u], offsets[u + 1]
            _realise_path(lo, hi, ts, chan, base[u], beta, saturation, memory_us, terms, decision, converted, counts)
            touched[:] = False
            for j in range(lo, hi):
                touched[chan[j]] = True
            listed[:] = False
            n_removed = 0
            for j in range(lo, hi):
                c = chan[j]
                if not listed[c]:
                    listed[c] = True
                    needed = beta[c] != 0.0
                    for t in range(kind.size):
                        if term_beta[t] != 0.0 and (
                            (term_first[t] == c and touched[term_second[t]])
                            or (term_second[t] == c and touched[term_first[t]])
                        ):
                            needed = True
                    if needed:
                        removed[n_removed] = c
                        starts[n_removed] = j
                        n_removed += 1
            _expected_conversions(
                lo, hi, ts, chan, base[u], beta, removed, starts, n_removed, gain, saturation, memory_us, terms,
                scratch,
            )  # fmt: skip
            out = scratch[5]
            for r in range(n_removed):
                incremental[u, removed[r]] = out[0] - out[r + 1]
    return converted, incremental


@jit
def _splitmix64(x):
    """The SplitMix64 finaliser of a uint64 (a fixed, well-mixed hash)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@jit
def _click_keys(numbers, key):
    """``splitmix64(number ^ key)`` of each (uint64) touchpoint number."""
    out = np.empty(numbers.size, np.uint64)
    for i in range(numbers.size):
        out[i] = _splitmix64(np.uint64(numbers[i]) ^ key)
    return out


@pjit
def _format_fixed(prefix, numbers, width, base):
    """UTF-8 bytes of ``prefix + number`` zero-padded to ``width`` digits in ``base`` (10 or 16).

    Returns uint8[n * (len(prefix) + width)]; row ``i`` starts at ``i * (len(prefix) + width)``.
    """
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    size = prefix.size + width
    out = np.empty(numbers.size * size, np.uint8)
    for i in prange(numbers.size):
        row = i * size
        out[row : row + prefix.size] = prefix
        x = np.uint64(numbers[i])
        for d in range(size - 1, prefix.size - 1, -1):
            out[row + d] = digits[x % np.uint64(base)]
            x //= np.uint64(base)
    return out


# ---------------------------------------------------------------------------------------------
# frames of one batch
# ---------------------------------------------------------------------------------------------

_CAMPAIGN_NAMES: tuple[str, ...] = tuple(name for c in CHANNELS for name in CHANNEL_CAMPAIGNS[c])


@dataclass(frozen=True)
class _Batch:
    """The arrays of one batch of users, concatenated from block slices."""

    first_user: int
    first_touch: int  # global number of the batch's first touchpoint
    first_conversion: int  # global number of the batch's first conversion
    touch_counts: np.ndarray  # int64[U]
    conversion_counts: np.ndarray  # int64[U]
    site: np.ndarray  # int64[U]
    ts: np.ndarray  # int64[N]
    channel: np.ndarray  # int8[N]
    campaign: np.ndarray  # int32[N]
    conversion_ts: np.ndarray  # int64[K]
    conversion_value: np.ndarray  # int64[K]
    reached: np.ndarray  # int64[C], users touched by each channel
    touches: np.ndarray  # int64[C]
    incremental: np.ndarray  # float64[C]

    @property
    def n_users(self) -> int:
        """Number of users in the batch."""
        return self.touch_counts.size


def _build_batch(params: _Params, parts: list[tuple[_Block, int, int]]) -> SyntheticData:
    """Turn the user ranges ``[lo, hi)`` of the blocks in ``parts`` into the frames and the truth."""
    batch = _concatenate(parts)
    return SyntheticData(
        touchpoints=_touchpoint_frame(params, batch),
        conversions=_conversion_frame(params, batch),
        truth=_truth_frame(batch, params.model.beta),
        seed=params.seed,
    )


def _concatenate(parts: list[tuple[_Block, int, int]]) -> _Batch:
    """Concatenate block slices (consecutive users) into one batch; truth sums are taken per slice."""
    first_block, first_lo, _ = parts[0]

    def gather(field: str, offsets: str | None) -> np.ndarray:
        chunks = []
        for block, lo, hi in parts:
            bounds = getattr(block, offsets) if offsets else None
            i0, i1 = (int(bounds[lo]), int(bounds[hi])) if bounds is not None else (lo, hi)
            chunks.append(getattr(block, field)[i0:i1])
        return np.concatenate(chunks)

    per_user = [
        (np.diff(b.touch_offsets[lo : hi + 1]), np.diff(b.conversion_offsets[lo : hi + 1])) for b, lo, hi in parts
    ]
    n_channels = len(CHANNELS)
    reached, touches, incremental = np.zeros(n_channels, np.int64), np.zeros(n_channels, np.int64), np.zeros(n_channels)
    for block, lo, hi in parts:
        reached += (block.channel_touches[lo:hi] > 0).sum(axis=0)
        touches += block.channel_touches[lo:hi].sum(axis=0)
        incremental += block.incremental[lo:hi].sum(axis=0)
    return _Batch(
        first_user=first_block.first_user + first_lo,
        first_touch=first_block.touch_base + int(first_block.touch_offsets[first_lo]),
        first_conversion=first_block.conversion_base + int(first_block.conversion_offsets[first_lo]),
        touch_counts=np.concatenate([t for t, _ in per_user]),
        conversion_counts=np.concatenate([c for _, c in per_user]),
        site=gather("site", None),
        ts=gather("ts", "touch_offsets"),
        channel=gather("channel", "touch_offsets"),
        campaign=gather("campaign", "touch_offsets"),
        conversion_ts=gather("conversion_ts", "conversion_offsets"),
        conversion_value=gather("conversion_value", "conversion_offsets"),
        reached=reached,
        touches=touches,
        incremental=incremental,
    )


def _fixed_ids(prefix: str, numbers: np.ndarray, width: int, base: int = 10) -> pl.Series:
    """Ids ``prefix + zero-padded number`` as a polars String series, built from raw Arrow buffers."""
    raw = np.frombuffer(prefix.encode(), np.uint8)
    data = _format_fixed(raw, numbers, width, base)
    offsets = np.arange(numbers.size + 1, dtype=np.int64) * (raw.size + width)
    array = pa.Array.from_buffers(pa.large_string(), numbers.size, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pl.from_arrow(array)


def _lookup(names: list[str | None] | pl.Series, codes: np.ndarray) -> pl.Series:
    """``names[code]`` per row as a String series; a negative code or a None name gives null."""
    values = names if isinstance(names, pl.Series) else pl.Series(names, dtype=pl.String)
    if values.len() == 1 and values.null_count() == 0 and codes.size and codes.min() == 0 == codes.max():
        return pl.repeat(values[0], codes.size, dtype=pl.String, eager=True)
    index = pl.Series(codes.astype(np.int64, copy=False))
    return values.gather(pl.select(pl.when(index >= 0).then(index)).to_series())


def _id_width(params: _Params) -> int:
    """Digits of touchpoint / conversion numbers: enough for the most touchpoints ``params`` allow."""
    return max(_ID_WIDTH, len(str(params.n_users * _MAX_TOUCHES_PER_USER)))


def _user_ids(params: _Params, batch: _Batch, counts: np.ndarray) -> pl.Series:
    """``u_`` + zero-padded global user index, repeated ``counts`` times per user of the batch."""
    users = np.arange(batch.first_user, batch.first_user + batch.n_users, dtype=np.int64)
    ids = _fixed_ids("u_", users, max(_USER_ID_WIDTH, len(str(params.n_users - 1))))
    return ids.gather(np.repeat(np.arange(batch.n_users, dtype=np.int64), counts))


def _dense_codes(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``codes`` (all in ``[0, size)``), sorted, and each code's rank among them."""
    if size > max(4 * codes.size, 1 << 16):
        return np.unique(codes, return_inverse=True)
    present = np.bincount(codes, minlength=size) > 0
    used = np.flatnonzero(present)
    rank = np.cumsum(present) - 1
    return used, rank[codes]


def _organization_site(params: _Params, batch: _Batch, counts: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """``org_<o+1>`` and ``site_<o+1>_<s+1>`` per row (global site code ``o * S + s`` per user)."""
    per = params.sites_per_organization
    organization = batch.site // per
    orgs, org_rank = _dense_codes(organization, params.n_organizations)
    sites, site_rank = _dense_codes(batch.site, params.n_organizations * per)
    org_names = [f"org_{o + 1}" for o in orgs.tolist()]
    site_names = [f"site_{code // per + 1}_{code % per + 1}" for code in sites.tolist()]
    return (
        _lookup(org_names, np.repeat(org_rank, counts)),
        _lookup(site_names, np.repeat(site_rank, counts)),
    )


def _click_column(params: _Params, column: str, numbers: np.ndarray, channel: np.ndarray) -> pl.Series:
    """Click ids of one click-id column: set on the touches of the channel that carries it.

    The id is the column's prefix and 16 hex digits of ``splitmix64(touchpoint_number ^ key)``, the
    key a hash of the seed and the column, so it is fixed by the touchpoint and the seed.
    """
    owner = next(i for i, c in enumerate(CHANNELS) if CHANNEL_UTM[c][2] == column)
    mask = channel == owner
    tag = np.uint64(1 + list(_CLICK_PREFIX).index(column))
    key = np.uint64(_splitmix64(np.uint64(_splitmix64(np.uint64(params.seed))) ^ tag))
    values = _fixed_ids(_CLICK_PREFIX[column], _click_keys(numbers[mask], key), 16, 16)
    return _lookup(values, np.where(mask, np.cumsum(mask) - 1, -1))


def _touchpoint_frame(params: _Params, batch: _Batch) -> pl.DataFrame:
    """The touchpoints frame of a batch (sorted by user, then time)."""
    channel = batch.channel
    numbers = np.arange(batch.first_touch, batch.first_touch + channel.size, dtype=np.int64)
    organization, site = _organization_site(params, batch, batch.touch_counts)
    return pl.DataFrame(
        {
            "touchpoint_id": _fixed_ids("tp_", numbers, _id_width(params)),
            "anon_id": _user_ids(params, batch, batch.touch_counts),
            "occurred_at": _timestamps(params, batch.ts),
            "channel": pl.Series(channel.astype(np.uint8)).cat.to(pl.Enum(CHANNELS)),
            "organization_id": organization,
            "site_id": site,
            "utm_source": _lookup([CHANNEL_UTM[c][0] for c in CHANNELS], channel),
            "utm_medium": _lookup([CHANNEL_UTM[c][1] for c in CHANNELS], channel),
            "utm_campaign": _lookup(list(_CAMPAIGN_NAMES), batch.campaign),
            "gclid": _click_column(params, "gclid", numbers, channel),
            "fbclid": _click_column(params, "fbclid", numbers, channel),
            "ttclid": _click_column(params, "ttclid", numbers, channel),
        }
    )


def _conversion_frame(params: _Params, batch: _Batch) -> pl.DataFrame:
    """The conversions frame of a batch (sorted by user, then time)."""
    n = batch.conversion_ts.size
    numbers = np.arange(batch.first_conversion, batch.first_conversion + n, dtype=np.int64)
    organization, site = _organization_site(params, batch, batch.conversion_counts)
    return pl.DataFrame(
        {
            "conversion_id": _fixed_ids("cv_", numbers, _id_width(params)),
            "anon_id": _user_ids(params, batch, batch.conversion_counts),
            "occurred_at": _timestamps(params, batch.conversion_ts),
            "value_micros": pl.Series(batch.conversion_value, dtype=pl.Int64),
            "name": pl.repeat(_CONVERSION_NAME, n, dtype=pl.String, eager=True),
            "organization_id": organization,
            "site_id": site,
        }
    )


def _timestamps(params: _Params, relative_us: np.ndarray) -> pl.Series:
    """Microseconds since ``start`` as a ``Datetime("us", "UTC")`` series."""
    return pl.Series(relative_us + params.start_us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))


def _truth_frame(batch: _Batch, beta: np.ndarray) -> pl.DataFrame:
    """Per channel: beta, reach, touches, incremental conversions and true share of a batch.

    ``true_share`` is ``incremental / incremental.sum()``; NaN when no channel adds anything (a batch
    whose users touch only zero-effect channels).
    """
    total = batch.incremental.sum()
    share = batch.incremental / total if total > 0 else np.full(len(CHANNELS), np.nan)
    return pl.DataFrame(
        {
            "channel": pl.Series(CHANNELS, dtype=pl.Enum(CHANNELS)),
            "beta": beta,
            "reach": batch.reached / batch.n_users,
            "touches": batch.touches,
            "incremental_conversions": batch.incremental,
            "true_share": share,
        }
    )
