"""Simulated worlds with many conversion mechanisms and an exactly computed Shapley ground truth.

Written from the engine's data contract and docs/synthetic.md §4 only, independently of the attribution
models, so that models can be scored on worlds their authors did not build around. Each mechanism of
:data:`MECHANISMS` is a different way conversions happen (a decision at every touch or once at the journey's
end; additive, interacting, saturating, ordered, decaying, thresholded, negative, heterogeneous or confounded
effects). The truth of a world is, for every channel, the sum over users of the channel's Shapley value in the
game ``v(S) = P(convert | exposures restricted to S) - P(convert | no exposures)``, computed exactly by
enumeration of the subsets of each user's channels (docs/worlds.md). Each channel's holdout effect (what a
randomized holdout test of it measures) comes from the same computation: :meth:`World.holdout_effect`,
:meth:`World.lift_test`.

Examples
--------
>>> from optiq_engine.simulate import worlds
>>> world = worlds.generate("end_interaction", n_users=2_000, seed=1)
>>> world.truth.columns
['channel', 'true_contribution', 'true_share', 'touches', 'reach', 'holdout_effect']
>>> test = world.lift_test("google_ads")  # an Experiment: its expected result, with a 10 % holdout
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import polars as pl

from ..errors import ConfigError
from ..experiments import Experiment
from . import _kernels as k
from .mechanisms import CHANNELS, EXPOSURE, HALF_LIFE_DAYS, PRESETS, Mechanism

__all__ = ["CHANNELS", "MECHANISMS", "World", "generate"]

MECHANISMS: Mapping[str, str] = MappingProxyType({name: m.description for name, m in PRESETS.items()})
"""Read-only mapping: mechanism name -> one-line description (docs/worlds.md §2)."""

AfterConversion = Literal["keep", "drop"]

_DAY_US = 86_400 * 1_000_000
_HOUR_US = 3_600 * 1_000_000
_ACTIVITY_SIGMA = 1.0  # spread of the users' activity (log-normal Poisson mean)
_MAX_TOUCHES = 200  # cap on a user's touches
_GAP_MEDIAN_DAYS = 1.5  # median of the users' median gap between touches
_PACE_SIGMA, _GAP_SIGMA = 0.6, 1.1
_DECISION_MEDIAN_US, _DECISION_SIGMA = 3 * _HOUR_US, 1.2  # journey-end decision delay (capped at 1 day)
_DELAY_MEDIAN_US, _DELAY_SIGMA = 10 * 60 * 1_000_000, 1.5  # per-touch conversion delay (capped at 6 h)
_VALUE_MEDIAN_MICROS, _VALUE_SIGMA = 50_000_000, 0.8
_KIND = {
    "end_counts": k.END_COUNTS,
    "end_decay": k.END_DECAY,
    "touch_stock": k.TOUCH_STOCK,
    "touch_decay": k.TOUCH_DECAY,
}
_STREAM = 0x3F0_21D5  # mixed into the seed so that worlds never share a random stream with simulate.synthetic


@dataclass(frozen=True)
class World:
    """One simulated data set and its truth.

    Attributes
    ----------
    touchpoints
        ``touchpoint_id, anon_id, occurred_at (Datetime us UTC), channel (Enum of CHANNELS)``, sorted by user
        then time.
    conversions
        ``conversion_id, anon_id, occurred_at, value_micros (Int64)``; at most one per user.
    truth
        One row per channel of :data:`CHANNELS`: ``channel``, ``true_contribution`` (expected incremental
        conversions: the sum of the users' Shapley values, signed), ``true_share`` (``true_contribution`` over
        its sum), ``touches``, ``reach`` (share of users touched), ``holdout_effect`` (see
        :meth:`holdout_effect`).
    users
        One row per user: ``anon_id``, ``segment``, ``intent``, ``decision_at`` (the journey-end decision time;
        null for per-touch segments), ``p_convert`` and ``p_baseline`` (P(convert) with all exposures / none).
    mechanism, seed
        The arguments.
    params
        The mechanism's parameters as plain Python values (docs/worlds.md §2), enough to recompute the truth.
    user_values
        With ``user_values=True``: ``anon_id, channel, value`` for every user and channel it touched (its
        Shapley value); else ``None``.
    """

    touchpoints: pl.DataFrame
    conversions: pl.DataFrame
    truth: pl.DataFrame
    users: pl.DataFrame
    mechanism: str
    seed: int
    params: dict[str, Any]
    user_values: pl.DataFrame | None = None

    @property
    def expected_conversions(self) -> float:
        """``Σ_u P(convert)``: the expectation of the number of conversions."""
        return float(self.users["p_convert"].sum())

    @property
    def baseline_conversions(self) -> float:
        """``Σ_u P(convert | no exposures)``: conversions that happen without any channel."""
        return float(self.users["p_baseline"].sum())

    def holdout_effect(self, channel: str) -> float:
        """Expected conversions lost if ``channel``'s exposures had no effect (what a holdout test measures).

        ``Σ_u [P_u(D_u) - P_u(D_u \\ {c})]`` over every user, ``D_u`` the channels ``u`` touched and ``P_u(S)``
        the probability of §3 of docs/worlds.md (the one the Shapley truth uses: intent, segment, touches and
        decision times held fixed; the removed channel's touches stay decision points of per-touch
        mechanisms; the whole exposure sequence). Not the Shapley value ``true_contribution``: the two differ
        under interactions and through the non-linearity of ``σ``.

        Parameters
        ----------
        channel
            A name of :data:`CHANNELS`.

        Returns
        -------
        float
            The exact expected holdout effect (signed); ``0.0`` for a channel no user touched.

        Raises
        ------
        ConfigError
            ``channel`` is not a name of :data:`CHANNELS`.
        """
        if not isinstance(channel, str) or channel not in CHANNELS:
            raise ConfigError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
        return float(self.truth["holdout_effect"][CHANNELS.index(channel)])

    def lift_test(self, channel: str, *, holdout: float = 0.1) -> Experiment:
        """The expected result of a randomized holdout test of ``channel`` over the whole period.

        A random fraction ``holdout`` of all ``N`` users is kept from ``channel`` (its exposures have no
        effect on them); the test reports ``N (mean conversions of the exposed - mean of the holdout)``. Its
        expected value is :meth:`holdout_effect`, and its standard error, from the mean conversion
        probabilities of the two groups ``p_T = Σ_u P_u(D_u) / N`` and ``p_C = Σ_u P_u(D_u \\ {c}) / N``, is

        ``std_error = N sqrt(p_T (1 - p_T) / ((1 - holdout) N) + p_C (1 - p_C) / (holdout N))``.

        Parameters
        ----------
        channel
            A name of :data:`CHANNELS`.
        holdout
            Fraction of the users in the holdout group, in ``(0, 1)``.

        Returns
        -------
        Experiment
            ``Experiment(channel, holdout_effect(channel), std_error)`` with ``start = end = None`` (the whole
            period); no random draw.

        Raises
        ------
        ConfigError
            An unknown ``channel`` or a ``holdout`` outside ``(0, 1)``.
        """
        effect = self.holdout_effect(channel)
        if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0.0 < holdout < 1.0:
            raise ConfigError(f"holdout must be a number in (0, 1), got {holdout!r}")
        n = self.users.height
        p_test = self.expected_conversions / n
        p_control = (self.expected_conversions - effect) / n
        variance = p_test * (1.0 - p_test) / ((1.0 - holdout) * n) + p_control * (1.0 - p_control) / (holdout * n)
        return Experiment(channel, effect, n * math.sqrt(variance))

    def __repr__(self) -> str:
        return (
            f"World(mechanism={self.mechanism!r}, seed={self.seed}, users={self.users.height:,}, "
            f"touchpoints={self.touchpoints.height:,}, conversions={self.conversions.height:,})"
        )


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _params(mechanism: Mechanism, days: int, touches_per_user: float) -> dict[str, Any]:
    """The plain-Python parameters of a world (what ``World.params`` holds)."""
    out = asdict(mechanism)
    out["segments"] = [dict(s) for s in out["segments"]]
    out["pairs"] = [dict(p) for p in out["pairs"]]
    out["threshold"] = dict(out["threshold"]) if out["threshold"] else None
    out |= {
        "channels": list(CHANNELS),
        "half_life_days": {c: h * mechanism.half_life_scale for c, h in HALF_LIFE_DAYS.items()},
        "exposure": {c: list(v) for c, v in EXPOSURE.items()},
        "days": days,
        "touches_per_user": touches_per_user,
    }
    return out


def _kernel_args(mechanism: Mechanism) -> tuple:
    """Parameters of :mod:`._kernels` as arrays (segment-major), after the per-user arrays."""
    code = {c: i for i, c in enumerate(CHANNELS)}
    n_seg, n_ch = len(mechanism.segments), len(CHANNELS)
    kind = np.array([_KIND[s.kind] for s in mechanism.segments], np.int64)
    beta = np.zeros((n_seg, n_ch))
    quad = np.zeros((n_seg, n_ch))
    for g, s in enumerate(mechanism.segments):
        for c, b in s.beta.items():
            beta[g, code[c]] = b
        for c, q in s.quad.items():
            quad[g, code[c]] = q
    half_life_us = np.array([HALF_LIFE_DAYS[c] * mechanism.half_life_scale * _DAY_US for c in CHANNELS])
    pairs = mechanism.pairs
    pair_a = np.array([code[p.first] for p in pairs], np.int64)
    pair_b = np.array([code[p.second] for p in pairs], np.int64)
    pair_beta = np.array([p.beta for p in pairs], np.float64)
    pair_type = np.array([k.PAIR_AFTER if p.type == "after" else k.PAIR_TOGETHER for p in pairs], np.int64)
    thr = mechanism.threshold
    thr_in = np.array([thr is not None and c in thr.channels for c in CHANNELS], np.bool_)
    thr_k, thr_beta = (thr.k, float(thr.beta)) if thr else (0, 0.0)
    transform = k.LOG2 if mechanism.transform == "log2" else k.LINEAR
    return (
        kind,
        beta,
        quad,
        transform,
        float(mechanism.rho),
        half_life_us,
        pair_a,
        pair_b,
        pair_beta,
        pair_type,
        thr_in,
        thr_k,
        thr_beta,
    )


def _exposures(
    mechanism: Mechanism, rng: np.random.Generator, n_users: int, touches_per_user: float, days: int
) -> tuple[np.ndarray, ...]:
    """Draw every user's latent variables and touches (docs/worlds.md §1).

    Returns ``offsets, channel, ts, segment, intent, decision`` (``ts`` and ``decision`` in µs since start).
    """
    n_ch = len(CHANNELS)
    shares = np.array([s.share for s in mechanism.segments])
    segment = rng.choice(len(shares), size=n_users, p=shares / shares.sum()).astype(np.int64)
    intent = rng.standard_normal(n_users)
    # activity: 1 + Poisson(λ_u), λ_u log-normal with mean touches_per_user - 1 (heavy-tailed)
    z = rng.standard_normal(n_users)
    lam = (touches_per_user - 1.0) * np.exp(_ACTIVITY_SIGMA * z - _ACTIVITY_SIGMA**2 / 2)
    n = np.minimum(1 + rng.poisson(lam), _MAX_TOUCHES).astype(np.int64)
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(n, out=offsets[1:])
    total = int(offsets[-1])
    user = np.repeat(np.arange(n_users), n)
    pos = np.arange(total) - offsets[user]  # 0-based position in the journey
    # availability and channel mix
    gamma = np.array([mechanism.intent_exposure.get(c, 0.0) for c in CHANNELS])
    shift = np.array([[s.exposure.get(c, 0.0) for c in CHANNELS] for s in mechanism.segments])
    a = np.array([EXPOSURE[c][0] for c in CHANNELS])
    loading = intent[:, None] * gamma[None, :] + shift[segment]  # (n_users, C)
    with np.errstate(divide="ignore"):
        logit_a = np.log(a) - np.log1p(-a)
    available = rng.random((n_users, n_ch)) < 1.0 / (1.0 + np.exp(-(logit_a[None, :] + loading)))
    available[:, CHANNELS.index("direct")] = True
    early = np.array([EXPOSURE[c][1] for c in CHANNELS])
    late = np.array([EXPOSURE[c][2] for c in CHANNELS])
    r = ((pos + 0.5) / n[user])[:, None]
    with np.errstate(divide="ignore"):
        log_w = np.log((1.0 - r) * early + r * late) + loading[user] + np.where(available[user], 0.0, -np.inf)
    gumbel = -np.log(-np.log(rng.random((total, n_ch))))
    channel = np.argmax(log_w + gumbel, axis=1).astype(np.int64)
    del log_w, gumbel
    # times: log-normal gaps around a per-user median, compressed into the period, at a uniform offset
    period = days * _DAY_US - _DAY_US  # the last day is kept free for decisions and conversions
    pace = _GAP_MEDIAN_DAYS * _DAY_US * np.exp(_PACE_SIGMA * rng.standard_normal(n_users))
    gaps = pace[user] * np.exp(_GAP_SIGMA * rng.standard_normal(total))
    gaps[offsets[:-1]] = 0.0
    gaps = np.maximum(gaps, 1e6)
    gaps[offsets[:-1]] = 0.0
    span = np.add.reduceat(gaps, offsets[:-1])
    limit = (period - 1 - n).astype(np.float64)
    scale = np.where(span > limit, limit / np.maximum(span, 1.0), 1.0)
    steps = np.maximum(np.floor(gaps * scale[user]).astype(np.int64), 1)
    steps[offsets[:-1]] = 0
    rel = np.cumsum(steps) - np.repeat(np.cumsum(steps)[offsets[:-1]], n)
    span_us = rel[offsets[1:] - 1]
    start = np.floor(rng.random(n_users) * (period - span_us)).astype(np.int64)
    ts = start[user] + rel
    delay = np.exp(math.log(_DECISION_MEDIAN_US) + _DECISION_SIGMA * rng.standard_normal(n_users))
    decision = ts[offsets[1:] - 1] + np.minimum(delay, _DAY_US - 1).astype(np.int64)
    return offsets, channel, ts, segment, intent, decision


def _ids(prefix: str, n: int, width: int) -> pl.Series:
    return pl.Series(np.arange(n, dtype=np.int64)).cast(pl.String).str.zfill(width).str.replace(r"^", prefix)


def generate(
    mechanism: str,
    *,
    n_users: int = 100_000,
    seed: int = 0,
    touches_per_user: float = 5.0,
    days: int = 90,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    after_conversion: AfterConversion = "keep",
    user_values: bool = False,
) -> World:
    """Simulate one world of ``mechanism`` and compute its exact Shapley truth.

    Parameters
    ----------
    mechanism
        A name of :data:`MECHANISMS`.
    n_users
        Number of users (each has at least one touch).
    seed
        Seed of every random draw; the same arguments give the same frames bit for bit.
    touches_per_user
        Mean touches per user (``>= 1``; heavy-tailed, capped at 200 per user).
    days
        Length of the period (``>= 2``); the last day only holds decisions and conversions.
    start
        Timezone-aware start of the period.
    after_conversion
        ``"keep"`` (default): the touches a converted user receives after converting stay in
        ``touchpoints`` (the exposures are not caused by conversions); ``"drop"``: they are removed. The truth
        is the same (it concerns the whole exposure sequence).
    user_values
        Also return each user's Shapley values in ``World.user_values``.

    Returns
    -------
    World

    Raises
    ------
    ConfigError
        An unknown mechanism or an out-of-range argument (the message names it).

    Notes
    -----
    The truth is exact (no sampling): per user, ``P(convert | S)`` for every subset ``S`` of its channels in
    closed form, then Shapley values. The realised conversions are one draw of the same model, so their count
    matches ``World.expected_conversions`` up to sampling noise.
    """
    n_users, seed, days, touches_per_user = _checked(
        mechanism, n_users, seed, days, touches_per_user, start, after_conversion
    )
    spec = PRESETS[mechanism]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _STREAM])))
    offsets, channel, ts, segment, intent, decision = _exposures(spec, rng, n_users, touches_per_user, days)
    alpha = np.array([s.alpha for s in spec.segments])
    base = alpha[segment] + spec.intent_sd * intent
    args = _kernel_args(spec)
    kind = args[0]
    per_user = (offsets, channel, ts, kind, base, segment, decision)
    phi, p_all, p_none, holdout = k.user_values(*per_user, *args[1:])
    u_user = rng.random(n_users)
    u_touch = rng.random(channel.shape[0])
    deciding = k.decide(*per_user, *args[1:], u_user, u_touch)
    converted, conv_ts, values = _conversions(rng, deciding, kind, segment, offsets, ts, decision)
    start_us = int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    user = np.repeat(np.arange(n_users), np.diff(offsets))
    keep = _kept_touches(after_conversion, ts, user, converted, conv_ts, n_users)
    user_ids = _ids("u_", n_users, 9)
    touched = np.zeros((n_users, len(CHANNELS)), np.bool_)
    touched[user, channel] = True
    end_user = kind[segment] <= k.END_DECAY
    params = _params(spec, days, touches_per_user) | {"start": start.isoformat(), "after_conversion": after_conversion}
    return World(
        touchpoints=_touchpoint_frame(user_ids, user, channel, ts, keep, start_us),
        conversions=_conversion_frame(user_ids, converted, conv_ts, values, start_us),
        truth=_truth_frame(phi, holdout, channel, touched),
        users=_users_frame(spec, user_ids, segment, intent, decision, end_user, p_all, p_none, start_us),
        mechanism=mechanism,
        seed=seed,
        params=params,
        user_values=_values_frame(user_ids, touched, phi) if user_values else None,
    )


def _checked(
    mechanism: object,
    n_users: int,
    seed: int,
    days: int,
    touches_per_user: float,
    start: datetime,
    after_conversion: AfterConversion,
) -> tuple[int, int, int, float]:
    """Check :func:`generate`'s arguments; returns ``n_users, seed, days, touches_per_user`` normalised."""
    if not isinstance(mechanism, str) or mechanism not in PRESETS:
        raise ConfigError(f"unknown mechanism {mechanism!r}; choose one of {', '.join(PRESETS)}")
    n_users = _check_int("n_users", n_users, 1)
    seed = _check_int("seed", seed, 0)
    days = _check_int("days", days, 2)
    if isinstance(touches_per_user, bool) or not isinstance(touches_per_user, int | float):
        raise ConfigError(f"touches_per_user must be a number in [1, 50], got {touches_per_user!r}")
    if not 1.0 <= float(touches_per_user) <= 50.0:
        raise ConfigError(f"touches_per_user must be a number in [1, 50], got {touches_per_user!r}")
    if not isinstance(start, datetime) or start.tzinfo is None:
        raise ConfigError(f"start must be a timezone-aware datetime, got {start!r}")
    if after_conversion not in ("keep", "drop"):
        raise ConfigError(f"after_conversion must be 'keep' or 'drop', got {after_conversion!r}")
    return n_users, seed, days, float(touches_per_user)


def _conversions(
    rng: np.random.Generator,
    deciding: np.ndarray,
    kind: np.ndarray,
    segment: np.ndarray,
    offsets: np.ndarray,
    ts: np.ndarray,
    decision: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The realised conversions: ``converted`` (the converting users), their times (µs since start) and values.

    At the decision time (journey-end segments) or shortly after the deciding touch (per-touch segments):
    a log-normal delay capped at 6 h and at half the gap to the user's next touch. Draws the delays, then
    the values, from ``rng``.
    """
    converted = np.flatnonzero(deciding >= 0)
    j = deciding[converted]
    end_kind = kind[segment[converted]] <= k.END_DECAY
    delay = np.minimum(
        np.exp(math.log(_DELAY_MEDIAN_US) + _DELAY_SIGMA * rng.standard_normal(converted.size)), 6 * _HOUR_US
    )
    has_next = j + 1 < offsets[converted + 1]
    half_gap = np.where(has_next, (ts[np.minimum(j + 1, ts.size - 1)] - ts[j]) // 2, 6 * _HOUR_US)
    touch_time = ts[j] + np.minimum(delay.astype(np.int64), half_gap)
    conv_ts = np.where(end_kind, decision[converted], touch_time)
    values = 10_000 * np.maximum(
        1,
        np.round(np.exp(math.log(_VALUE_MEDIAN_MICROS / 10_000) + _VALUE_SIGMA * rng.standard_normal(converted.size))),
    ).astype(np.int64)
    return converted, conv_ts, values


def _kept_touches(
    after_conversion: AfterConversion,
    ts: np.ndarray,
    user: np.ndarray,
    converted: np.ndarray,
    conv_ts: np.ndarray,
    n_users: int,
) -> np.ndarray:
    """Which touches go into ``touchpoints``: all (``"keep"``), or none after the user's conversion (``"drop"``)."""
    keep = np.ones(ts.size, np.bool_)
    if after_conversion == "drop":
        cut = np.full(n_users, np.iinfo(np.int64).max)
        cut[converted] = conv_ts
        keep = ts <= cut[user]
    return keep


def _touchpoint_frame(
    user_ids: pl.Series, user: np.ndarray, channel: np.ndarray, ts: np.ndarray, keep: np.ndarray, start_us: int
) -> pl.DataFrame:
    """The ``touchpoints`` frame of the kept touches (sorted by user, then time)."""
    return pl.DataFrame(
        {
            "touchpoint_id": _ids("tp_", int(keep.sum()), 12),
            "anon_id": user_ids.gather(user[keep]),
            "occurred_at": pl.Series(ts[keep] + start_us).cast(pl.Datetime("us", "UTC")),
            "channel": pl.Series(np.asarray(CHANNELS)[channel[keep]]).cast(pl.Enum(CHANNELS)),
        }
    )


def _conversion_frame(
    user_ids: pl.Series, converted: np.ndarray, conv_ts: np.ndarray, values: np.ndarray, start_us: int
) -> pl.DataFrame:
    """The ``conversions`` frame: at most one row per user, in user order."""
    return pl.DataFrame(
        {
            "conversion_id": _ids("cv_", converted.size, 12),
            "anon_id": user_ids.gather(converted),
            "occurred_at": pl.Series(conv_ts + start_us).cast(pl.Datetime("us", "UTC")),
            "value_micros": pl.Series(values, dtype=pl.Int64),
        }
    )


def _truth_frame(phi: np.ndarray, holdout: np.ndarray, channel: np.ndarray, touched: np.ndarray) -> pl.DataFrame:
    """Per channel: the summed Shapley values, their share (signed), touches, reach and summed holdout effects."""
    contribution = phi.sum(axis=0)
    total = contribution.sum()
    return pl.DataFrame(
        {
            "channel": list(CHANNELS),
            "true_contribution": contribution,
            "true_share": contribution / total if total != 0 else np.full(len(CHANNELS), np.nan),
            "touches": np.bincount(channel, minlength=len(CHANNELS)).astype(np.int64),
            "reach": touched.mean(axis=0),
            "holdout_effect": holdout.sum(axis=0),
        }
    )


def _users_frame(
    spec: Mechanism,
    user_ids: pl.Series,
    segment: np.ndarray,
    intent: np.ndarray,
    decision: np.ndarray,
    end_user: np.ndarray,
    p_all: np.ndarray,
    p_none: np.ndarray,
    start_us: int,
) -> pl.DataFrame:
    """One row per user: segment, intent, decision time (journey-end deciders), P(convert) with all / no exposures."""
    return pl.DataFrame(
        {
            "anon_id": user_ids,
            "segment": pl.Series([s.name for s in spec.segments]).gather(segment),
            "intent": intent,
            "decision_at": pl.Series(np.where(end_user, decision + start_us, 0)).cast(pl.Datetime("us", "UTC")),
            "p_convert": p_all,
            "p_baseline": p_none,
        }
    ).with_columns(pl.when(pl.Series(end_user)).then(pl.col("decision_at")).alias("decision_at"))


def _values_frame(user_ids: pl.Series, touched: np.ndarray, phi: np.ndarray) -> pl.DataFrame:
    """``anon_id, channel, value``: each user's Shapley value of every channel it touched."""
    uu, cc = np.nonzero(touched)
    return pl.DataFrame({"anon_id": user_ids.gather(uu), "channel": np.asarray(CHANNELS)[cc], "value": phi[uu, cc]})
