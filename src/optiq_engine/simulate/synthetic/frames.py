"""The frames of one batch of users: touchpoints, conversions and the truth, in a :class:`SyntheticData`.

Block slices are concatenated into a batch (:func:`_concatenate`); the id columns are built from raw
Arrow buffers and the repeated strings by lookup, so a batch costs little more than its arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import polars as pl
import pyarrow as pa

from ._kernels import _click_keys, _format_fixed, _splitmix64
from .scenarios import CHANNEL_CAMPAIGNS, CHANNEL_UTM, CHANNELS
from .simulation import _MAX_TOUCHES_PER_USER, _Block, _Params

__all__ = ["SyntheticData"]

_CONVERSION_NAME = "purchase"
_CLICK_PREFIX = {"gclid": "Cj0KCQiA", "fbclid": "IwAR", "ttclid": "E.C.P."}
_ID_WIDTH = 12  # digits of touchpoint and conversion numbers (more only beyond 1e12 touchpoints)
_USER_ID_WIDTH = 9  # digits of user numbers (more only beyond 1e9 users)


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
    return cast(pl.Series, pl.from_arrow(array))  # an Arrow array is a Series


def _lookup(names: Sequence[str | None] | pl.Series, codes: np.ndarray) -> pl.Series:
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
