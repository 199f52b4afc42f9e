"""Simulation of one block of users: the random draws, in a fixed order, and the conversion kernel.

A scenario is compiled into kernel inputs (:class:`_Model`); :func:`_simulate_block` draws a block's users,
touches and conversions from the block's own generator (docs/synthetic.md §2 and §5) and computes the
exact incremental conversions of every channel (§4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import (
    _INTERACTION,
    _ORDER,
    _apply_follower,
    _draw_channels,
    _place_touches,
    _simulate_conversions,
)
from .scenarios import _AVAILABILITY, _INTENT_LOADING, CHANNEL_CAMPAIGNS, CHANNELS, Scenario

_MAX_TOUCHES_PER_USER = 5_000
_ACTIVITY_SIGMA = 1.0  # log-normal spread of a user's touch rate
_GAP_MEDIAN_DAYS = 2.0  # median of the users' median inter-arrival time
_PACE_SIGMA = 0.6  # spread of the users' median inter-arrival times
_GAP_SIGMA = 1.2  # spread of one user's inter-arrival times
_MIN_GAP_US = 1_000_000  # touches of a user are at least 1 s apart (unless compressed)
_MAX_DELAY_US = 6 * 3_600_000_000  # a conversion follows its touch by at most 6 hours
_MEMORY_US = 30 * 86_400_000_000 - _MAX_DELAY_US  # touches older than this are forgotten
_DELAY_MEDIAN_US = 10 * 60_000_000  # median conversion delay: 10 minutes
_DELAY_SIGMA = 1.5
_VALUE_MEDIAN_MICROS = 50_000_000  # median conversion value: 50 currency units
_VALUE_SIGMA = 0.8
_CENT_MICROS = 10_000  # values are whole cents
_US_PER_DAY = 86_400_000_000


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


def _block_rng(seed: int, block_index: int) -> np.random.Generator:
    """The random generator of one block: PCG64 seeded by ``SeedSequence([seed, block_index])``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, block_index])))


def _simulate_block(
    params: _Params, block_index: int, block_users: int, touch_base: int, conversion_base: int
) -> _Block:
    """Simulate the users ``block_index * block_users ...`` (at most ``block_users`` of them).

    The random numbers are drawn in a fixed order from the block's own generator, so a block's
    content depends only on ``(params, block_index)`` (``block_users`` is the generator's fixed
    ``_BLOCK_USERS``).
    """
    rng = _block_rng(params.seed, block_index)
    first_user = block_index * block_users
    n = min(block_users, params.n_users - first_user)
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
        offsets,
        ts,
        channel,
        model.alpha + model.intercept_sd * intent,
        rng.random(int(offsets[-1])),
        model.beta,
        model.rho,
        _MEMORY_US,
        model.terms,
    )
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
