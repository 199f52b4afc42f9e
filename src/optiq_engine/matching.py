"""Validated frames matched: every conversion's touchpoints found (docs/contract.md §1-§2).

The first half of a run (:func:`optiq_engine.pipeline.run_attribution`): both frames validated
(:func:`normalize_inputs`), channels encoded (:func:`encode_channels`), rows grouped, sorted by (group,
time, id) and every conversion's window of touchpoints found (:func:`match_inputs`), all as arrays that
the models' kernels read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from .channels import DEFAULT_CHANNEL_RULES, clean_channel_labels, derive_channels
from .config import AttributionConfig
from .errors import ConfigError, InputError
from .frames import Normalized, normalize_conversions, normalize_touchpoints, warn_confusable_ids
from .grouping import NO_MASK, group_hashes, group_key_columns, hash_attempts, order_ties_by_id
from .identity import PERSON, IdentityStitch, stitch
from .kernels.paths import tail_ranges
from .kernels.sort import bucket_bits, sort_by_group_time
from .kernels.windows import match_windows
from .layout import readonly
from .result import LookbackCoverage, lookback_coverage
from .timestamps import micros

__all__ = ["Matched", "encode_channels", "match_inputs", "normalize_inputs"]

log = logging.getLogger(__name__)

_MAX_CHANNELS = 1 << 23  # channel codes ride in 24 bits of the sort records
#: Test hook: mask applied to the primary group hash (a small value provokes collisions).
_HASH_MASK = NO_MASK


@dataclass
class Matched:
    """Validated frames, sorted touchpoints and every conversion's window (and the groups' tails)."""

    tp: pl.DataFrame
    cv: pl.DataFrame
    quarantined: dict[str, pl.DataFrame]
    channels: list[str]
    tp_order: np.ndarray
    tp_tss: np.ndarray
    tp_codes: np.ndarray
    cv_order: np.ndarray
    cv_value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    has_tp: np.ndarray
    tail_lo: np.ndarray | None
    tail_hi: np.ndarray | None
    cv_tss: np.ndarray | None = None  # conversion times, aligned with lo and hi
    coverage: LookbackCoverage | None = None
    identity: IdentityStitch | None = None  # with identity="stitched": the persons the anon ids made
    start: np.ndarray | None = None  # per conversion, where its whole journey starts (match_windows)
    whole_tail_lo: np.ndarray | None = None  # the tails' starts without the lookback (ends: tail_hi)
    repeat: np.ndarray | None = None  # per conversion: its group converted before it
    tail_after_conversion: np.ndarray | None = None  # per tail: its group has a conversion (the tail follows it)

    def fit_ranges(self, *, whole: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The journeys a data-driven fit reads (docs/data_driven.md §1): per conversion where its journey
        starts (``hi`` ends it), and the non-converting tails' starts and ends; the lookback windows, or with
        ``whole`` the whole journeys since the previous conversion (the tails: every touchpoint after the
        group's last conversion)."""
        assert self.tail_lo is not None and self.tail_hi is not None, "matched without tails"
        if not whole:
            return self.lo, self.tail_lo, self.tail_hi
        assert self.start is not None and self.whole_tail_lo is not None
        return self.start, self.whole_tail_lo, self.tail_hi


def normalize_inputs(touchpoints: Any, conversions: Any, cfg: AttributionConfig) -> tuple[Normalized, Normalized]:
    """Both input frames validated with the run's input options (docs/contract.md §1); one :class:`InputError`
    counting the invalid rows of both when both have some."""
    read: dict[str, Any] = {"timezone": cfg.timezone, "timestamp_format": cfg.timestamp_format}
    money: dict[str, Any] = {"value_column": cfg.value_column, "value_unit": cfg.value_unit}
    errors: list[InputError] = []
    try:
        tp_norm = normalize_touchpoints(touchpoints, on_invalid=cfg.on_invalid, **read)
    except InputError as exc:
        errors.append(exc)
    try:
        cv_norm = normalize_conversions(conversions, on_invalid=cfg.on_invalid, **read, **money)
    except InputError as exc:
        errors.append(exc)
    if len(errors) == 2:
        counts = {f"touchpoints: {k}": v for k, v in errors[0].counts.items()}
        counts |= {f"conversions: {k}": v for k, v in errors[1].counts.items()}
        raise InputError(f"{errors[0]} And {errors[1]}", counts)
    if errors:
        raise errors[0]
    warn_confusable_ids(tp_norm.frame.get_column("anon_id"), cv_norm.frame.get_column("anon_id"))
    return tp_norm, cv_norm


def match_inputs(touchpoints: Any, conversions: Any, cfg: AttributionConfig, timed: Any, *, tails: bool) -> Matched:
    """Validate, encode, sort by (group, time, id) and find every conversion's touchpoints (docs/contract.md §2).

    Frames already validated by the caller (:class:`Normalized`, as :mod:`.conversion_types` passes each
    type's) are taken as they are."""
    with timed("validate"):
        if isinstance(touchpoints, Normalized) and isinstance(conversions, Normalized):
            tp_norm, cv_norm = touchpoints, conversions
        else:
            tp_norm, cv_norm = normalize_inputs(touchpoints, conversions, cfg)
        tp, cv = tp_norm.frame, cv_norm.frame

    with timed("encode"):
        keys = group_key_columns(tp, cv)
        identity = None
        if cfg.identity == "stitched":  # grouped by person, not by anon id (docs/contract.md §1.5)
            tp, cv, identity = stitch(tp, cv, keys[:-1])
            keys = [*keys[:-1], PERSON]
            log.info("%s", identity.message())
        tp, channels, tp_code = encode_channels(tp, cfg)
        tp_h, tp_h2, cv_h, cv_h2 = _group_hashes(tp, cv, keys, exact=False)
        tp_ts = tp.get_column("occurred_at").to_physical().to_numpy()
        cv_ts = cv.get_column("occurred_at").to_physical().to_numpy()

    bits = bucket_bits(max(tp.height, cv.height), rows_per_bucket=4096, max_bits=12)
    lookback = micros(cfg.lookback)
    for exact in hash_attempts(log):
        if exact:
            with timed("encode"):
                tp_h, tp_h2, cv_h, cv_h2 = _group_hashes(tp, cv, keys, exact=True)
        with timed("sort"):
            h, ts, h2, code = readonly(tp_h, tp_ts, tp_h2, tp_code)
            tp_order, tp_hs, tp_tss, tp_h2s, tp_codes, tp_buckets, tp_coll, tp_ties = sort_by_group_time(
                h, ts, h2, code, bits
            )
            h, ts, h2, code = readonly(cv_h, cv_ts, cv_h2, np.zeros(cv.height, dtype=np.int32))
            cv_order, cv_hs, cv_tss, cv_h2s, _, cv_buckets, cv_coll, cv_ties = sort_by_group_time(h, ts, h2, code, bits)
            del h, ts, h2, code
        with timed("match"):
            lo, hi, start, has_tp, cross_coll = match_windows(
                tp_hs,
                tp_tss,
                tp_h2s,
                tp_buckets,
                cv_hs,
                cv_tss,
                cv_h2s,
                cv_buckets,
                lookback,
                cfg.reset_after_conversion,
            )
        if tp_coll + cv_coll + cross_coll == 0:
            break
    del tp_h, tp_h2, tp_h2s, tp_code, cv_h, cv_h2, cv_h2s  # free what the rest does not need

    with timed("match"):
        tail_lo = tail_hi = whole_tail_lo = tail_after = None
        if tails:  # ranges end at time boundaries: ordering ties by id afterwards keeps them valid
            tail_lo, whole_tail_lo, tail_hi, tail_after = tail_ranges(
                tp_hs, tp_tss, tp_buckets, cv_hs, cv_tss, cv_buckets, lookback
            )
        if tp_ties:
            tp_order, tp_codes = order_ties_by_id(tp_order, tp_codes, tp_hs, tp_tss, tp.get_column("touchpoint_id"))
        if cv_ties:  # windows depend on times only: reordering tied conversions keeps lo, hi valid
            cv_order, _ = order_ties_by_id(cv_order, None, cv_hs, cv_tss, cv.get_column("conversion_id"))
        cv_value = cv.get_column("value_micros").to_numpy()[cv_order]
        repeat = np.r_[False, cv_hs[1:] == cv_hs[:-1]] if cv_hs.shape[0] else np.zeros(0, dtype=np.bool_)
        coverage = lookback_coverage(start, lo, hi, tp_tss, cv_tss, cfg.lookback)
    return Matched(
        tp=tp,
        cv=cv,
        quarantined={"touchpoints": tp_norm.quarantined, "conversions": cv_norm.quarantined},
        channels=channels,
        tp_order=tp_order,
        tp_tss=tp_tss,
        tp_codes=tp_codes,
        cv_order=cv_order,
        cv_value=cv_value,
        lo=lo,
        hi=hi,
        has_tp=has_tp,
        tail_lo=tail_lo,
        tail_hi=tail_hi,
        cv_tss=cv_tss,
        coverage=coverage,
        identity=identity,
        start=start,
        whole_tail_lo=whole_tail_lo,
        repeat=repeat,
        tail_after_conversion=tail_after,
    )


def encode_channels(tp: pl.DataFrame, cfg: AttributionConfig) -> tuple[pl.DataFrame, list[str], np.ndarray]:
    """Touchpoints with a complete ``channel`` column, the channel dictionary and int32 codes."""
    rules = cfg.channel_rules or DEFAULT_CHANNEL_RULES
    labels = None  # the given column's distinct labels, when they are the run's channels
    if "channel" not in tp.columns:
        tp = tp.with_columns(derive_channels(tp, rules).alias("channel"))
    else:
        col = tp.get_column("channel")
        if not (col.dtype == pl.String or isinstance(col.dtype, (pl.Categorical, pl.Enum))):
            raise ConfigError(f"touchpoints column 'channel' must hold strings, got {col.dtype}")
        labels = col.unique()
        cleaned = clean_channel_labels(col, labels)
        if cleaned.null_count():
            derived = derive_channels(tp.filter(cleaned.is_null()), rules)
            cleaned = cleaned.cast(pl.String).scatter(cleaned.is_null().arg_true(), derived)
        if cleaned is not col:
            tp, labels = tp.with_columns(cleaned.alias("channel")), None
    col = tp.get_column("channel")
    if isinstance(col.dtype, pl.Enum):
        channels = list(col.dtype.categories)
    else:
        channels = sorted((col.unique() if labels is None else labels).cast(pl.String).to_list())
        col = col.cast(pl.String).cast(pl.Enum(channels))
    if len(channels) >= _MAX_CHANNELS:
        raise InputError(f"touchpoints have {len(channels):,} channels; at most {_MAX_CHANNELS - 1:,} are supported")
    return tp, channels, col.to_physical().cast(pl.Int32).to_numpy()


def _group_hashes(
    tp: pl.DataFrame, cv: pl.DataFrame, keys: list[str], *, exact: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(h, h2) for touchpoints and conversions: two independent hashes, or exact codes mixed."""
    (tp_h, tp_h2), (cv_h, cv_h2) = group_hashes([tp, cv], keys, exact=exact, mask=_HASH_MASK)
    return tp_h, tp_h2, cv_h, cv_h2
