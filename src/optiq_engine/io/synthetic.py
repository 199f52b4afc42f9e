"""Seeded synthetic touchpoints and conversions with a known ground truth.

The generator simulates users who are touched by marketing channels over a period of ``days`` and who
convert according to a known per-touch hazard model in which every channel has a true effect
``beta_c``. Because the model is known, each channel's incremental contribution can be computed
exactly; it is returned in :attr:`SyntheticData.truth` so that attribution models can be scored
against it. The generative model and the definition of the truth are written down in
``docs/synthetic.md``.

Everything is deterministic for a ``seed``: randomness is drawn per fixed block of users
(``numpy.random.SeedSequence([seed, block_index])``), never per batch, so :func:`iter_generate`
yields the very rows of :func:`generate`, whatever ``batch_users`` is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import ConfigError
from ..kernels._jit import jit, pjit, prange

__all__ = ["CHANNELS", "CHANNEL_UTM", "CHANNEL_CAMPAIGNS", "SyntheticData", "generate", "iter_generate"]

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
) -> Iterator[SyntheticData]:
    """Generate the data set of :func:`generate` in batches of users.

    Parameters
    ----------
    batch_users : int
        Users per batch (the last batch may be smaller); a user never spans two batches.
    n_users, touchpoints_per_user, days, n_organizations, sites_per_organization, seed, start
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
) -> _Params:
    """Check the generator arguments and return them normalised."""
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
    available = _draw_availability(rng, intent)
    ts = _draw_times(rng, offsets, params.window_us)
    channel = _draw_channels(offsets, available, rng.random(int(offsets[-1])), _BASE_LOGIT, _DRIFT)
    campaign = _draw_campaigns(rng, channel)
    converted, incremental = _simulate_conversions(
        offsets, ts, channel, _ALPHA + _INTERCEPT_SD * intent, rng.random(int(offsets[-1])),
        _BETA, _RHO, _MEMORY_US,
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


def _draw_availability(rng: np.random.Generator, intent: np.ndarray) -> np.ndarray:
    """Which channels can reach each user: ``P = sigmoid(logit(a_c) + g_c * intent)``; direct always."""
    with np.errstate(divide="ignore"):
        logit = np.log(_AVAILABILITY) - np.log1p(-_AVAILABILITY)
    probability = 1.0 / (1.0 + np.exp(-(logit[None, :] + _INTENT_LOADING[None, :] * intent[:, None])))
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
def _realise_path(lo, hi, ts, chan, base, beta, saturation, memory_us, decision, converted, counts):
    """Simulate one user's conversions; mark the touches that trigger one in ``converted``.

    ``counts`` (int64[C], zeros on entry and on exit) holds the touches per channel of the stock
    ``[first, j]``: the touches after the last conversion and within ``memory_us`` of touch ``j``.
    ``saturation[k] = 1 + rho + ... + rho**(k-1)``. Touch ``j`` converts when
    ``decision[j] < sigmoid(base + sum_c beta[c] * saturation[counts[c]])``.
    """
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
        if decision[j] < _sigmoid(logit):
            converted[j] = True
            for i in range(first, j + 1):
                counts[chan[i]] -= 1
            first = j + 1
    for i in range(first, hi):
        counts[chan[i]] -= 1


@jit
def _expected_conversions(
    lo, hi, ts, chan, base, beta, removed, starts, n_removed, gain, saturation, memory_us, scratch
):
    """Exact expected conversions of one user, as is and with each channel of ``removed`` muted.

    A dynamic programme over the state "index of the last conversion so far", run for all scenarios
    at once: row ``r = 0`` is the actual model, row ``r >= 1`` the model in which the touches of
    channel ``removed[r - 1]`` add nothing to the log-odds (they stay decision points).
    ``prob[s - lo, r]`` is the probability that the last conversion happened at touch ``s``;
    ``free[r]`` collects "no conversion yet" and every state older than the memory window (they give
    the same hazard). At touch ``j`` the state ``s`` has the hazard of the touches ``(s, j]`` in the
    window, computed by sweeping ``i = j, j - 1, ..., a`` and adding touch ``i`` to the stock.
    Row ``r`` equals row 0 until the first touch of its channel, ``starts[r - 1]``: it is copied from
    row 0 there and only then evolved (``starts`` ascending).

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
    scratch : tuple
        ``(prob float64[>= hi - lo, C + 1], free float64[C + 1], acc float64[C + 1], kcount int64[C],
        kstamp int64[C], out float64[C + 1])``; ``out[r]`` receives the expected conversions of row r.
    """
    prob, free, acc, kcount, kstamp, out = scratch
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
        logit = base
        for i in range(j, a - 1, -1):
            c = chan[i]
            if kstamp[c] != j:
                kstamp[c] = j
                kcount[c] = 0
            logit += beta[c] * gain[kcount[c]]
            kcount[c] += 1
            p_all = _sigmoid(logit)
            if i > a:
                s = i - 1 - lo
                acc[0] += prob[s, 0] * p_all
                prob[s, 0] *= 1.0 - p_all
                for r in range(1, rows):
                    d = removed[r - 1]
                    p = _sigmoid(logit - beta[d] * saturation[kcount[d]]) if kstamp[d] == j else p_all
                    acc[r] += prob[s, r] * p
                    prob[s, r] *= 1.0 - p
            else:
                acc[0] += free[0] * p_all
                free[0] *= 1.0 - p_all
                for r in range(1, rows):
                    d = removed[r - 1]
                    p = _sigmoid(logit - beta[d] * saturation[kcount[d]]) if kstamp[d] == j else p_all
                    acc[r] += free[r] * p
                    free[r] *= 1.0 - p
        for r in range(rows):
            prob[j - lo, r] = acc[r]
            out[r] += acc[r]


@pjit
def _simulate_conversions(offsets, ts, chan, base, decision, beta, rho, memory_us):
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
        Saturation ratio in (0, 1).
    memory_us : int
        Touches older than this (relative to the decision) are forgotten.

    Returns
    -------
    converted : bool[N]
        Whether touch ``j`` triggered a conversion.
    incremental : float64[B, C]
        ``E[conversions] - E[conversions | channel c muted]`` of each user; exactly 0 when the user
        has no touch of ``c`` or ``beta[c] == 0``.
    """
    n_channels = beta.size
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
        )
        counts = np.zeros(n_channels, np.int64)
        touched = np.zeros(n_channels, np.bool_)
        removed = np.empty(n_channels, np.int64)
        starts = np.empty(n_channels, np.int64)
        for u in range(bounds[chunk], bounds[chunk + 1]):
            lo, hi = offsets[u], offsets[u + 1]
            _realise_path(lo, hi, ts, chan, base[u], beta, saturation, memory_us, decision, converted, counts)
            touched[:] = False
            n_removed = 0
            for j in range(lo, hi):
                c = chan[j]
                if not touched[c]:
                    touched[c] = True
                    if beta[c] != 0.0:
                        removed[n_removed] = c
                        starts[n_removed] = j
                        n_removed += 1
            _expected_conversions(
                lo, hi, ts, chan, base[u], beta, removed, starts, n_removed, gain, saturation, memory_us, scratch
            )
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
        truth=_truth_frame(batch),
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


def _truth_frame(batch: _Batch) -> pl.DataFrame:
    """Per channel: beta, reach, touches, incremental conversions and true share of a batch.

    ``true_share`` is ``incremental / incremental.sum()``; NaN when no channel adds anything (a batch
    whose users touch only zero-effect channels).
    """
    total = batch.incremental.sum()
    share = batch.incremental / total if total > 0 else np.full(len(CHANNELS), np.nan)
    return pl.DataFrame(
        {
            "channel": pl.Series(CHANNELS, dtype=pl.Enum(CHANNELS)),
            "beta": _BETA,
            "reach": batch.reached / batch.n_users,
            "touches": batch.touches,
            "incremental_conversions": batch.incremental,
            "true_share": share,
        }
    )
