"""Lift tests in a DATA_DRIVEN fit: each experiment resolved against the path table (its channel and the
journeys of its period), and the calibrated model's holdout effect next to the test's result."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ...errors import ModelError, OptiqWarning
from ...experiments import Experiment
from ...kernels import journey_model as jm
from .form_choice import _MIN_WEIGHT
from .journey_model import JourneyModel, _Target

if TYPE_CHECKING:
    from ...paths import PathTable
    from .model import DataDriven


def _experiment_targets(
    experiments: tuple[Experiment, ...], table: PathTable, periods: list[tuple[np.ndarray, np.ndarray]] | None
) -> list[_Target]:
    """Each experiment against ``table``: its channel's code and the journeys of its period per row (``periods``;
    ``None``: every journey)."""
    out = []
    for i, e in enumerate(experiments):
        if e.channel not in table.channels:
            raise ModelError(
                f"DATA_DRIVEN experiment on channel {e.channel!r}: no fitted journey has that channel; "
                f"channels are {list(table.channels)}"
            )
        weights = table.conversions + table.nulls if periods is None else periods[i][0] + periods[i][1]
        code = table.channels.index(e.channel)
        rows = np.repeat(np.arange(table.height), np.diff(table.offsets))[table.codes == code]
        if not weights[rows].any():
            raise ModelError(
                f"DATA_DRIVEN experiment on channel {e.channel!r}: no fitted journey with that channel ends in "
                f"its period [{e.start or '...'}, {e.end or '...'}) (a converting journey ends at its conversion, "
                "a non-converting one at its last touch)"
            )
        out.append(
            _Target(
                table.channels.index(e.channel),
                np.ascontiguousarray(weights, dtype=np.float64),
                e.incremental_conversions,
                e.std_error,
            )
        )
    return out


def experiment_periods(
    model: DataDriven,
    lo: np.ndarray,
    hi: np.ndarray,
    tail_lo: np.ndarray,
    tail_hi: np.ndarray,
    tp_codes: np.ndarray,
    tp_ts: np.ndarray,
    cv_ts: np.ndarray,
    channels: list[str],
    direct_channels: tuple[str, ...],
    fitted: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per experiment of ``model``, the converting and non-converting journeys of each path row of the run's
    table (docs/data_driven.md §1) whose end falls in the experiment's period: a converting journey ends at its
    conversion, a non-converting one at its last touch. Rows are those of the run's table (same journeys,
    same transform: :func:`build_path_table` orders rows by path hash, whatever the counts); ``fitted``: which
    of the journeys (converting, then tails) the fit reads (default: all)."""
    from ...paths import build_path_table

    converting = hi > lo
    starts = np.concatenate([lo[converting], tail_lo])
    ends = np.concatenate([hi[converting], tail_hi])
    n_conv = int(converting.sum())
    end_us = np.concatenate([cv_ts[converting], tp_ts[np.maximum(tail_hi - 1, 0)]]) if ends.shape[0] else ends
    conv = np.zeros(starts.shape[0])
    conv[:n_conv] = 1.0
    read = np.ones(starts.shape[0]) if fitted is None else fitted.astype(np.float64)
    out = []
    for e in model.experiments:
        a, b = e.bounds_us()
        _warn_past_the_data(e, a, b, end_us)
        inside = ((end_us >= a) & (end_us < b)) * read
        table, _ = build_path_table(
            starts,
            ends,
            tp_codes,
            channels,
            conv * inside,
            (1.0 - conv) * inside,
            np.zeros(starts.shape[0], dtype=np.int64),
            transform=model.transform,
            remove_direct_if_not_all=model.remove_direct_if_not_all,
            direct_channels=direct_channels,
            times=tp_ts if model.timed else None,
        )
        out.append((table.conversions, table.nulls))
    return out


_DAY_US = 86_400_000_000


def _warn_past_the_data(e: Experiment, a: int, b: int, end_us: np.ndarray) -> None:
    """Warn when ``e``'s period ``[a, b)`` (microseconds) runs more than a day past the journeys' ends on
    either side: its result is met by the journeys the data hold in the period, which is right only if the
    test measured those (a period typed as 1926, or a test longer than the data, is met by fewer)."""
    if not end_us.shape[0]:
        return
    first, last = int(end_us.min()), int(end_us.max())
    if (e.start is None or a >= first - _DAY_US) and (e.end is None or b <= last + _DAY_US):
        return  # an open side runs past the data by definition: it means "all of it"
    day = lambda us: str(np.datetime64(int(us), "us").astype("datetime64[D]"))  # noqa: E731
    warnings.warn(
        f"experiment on {e.channel!r}: its period [{e.start or '...'}, {e.end or '...'}) runs past the data, whose "
        f"journeys end from {day(first)} to {day(last)}; its result is met by the journeys of the period the data "
        "hold, so it must count only theirs (check the dates, or scale the result to the data's part of the period)",
        OptiqWarning,
        stacklevel=2,
    )


def _experiment_frame(
    experiments: tuple[Experiment, ...],
    targets: list[_Target],
    candidates: list[JourneyModel],
    observed: list[JourneyModel],
    weights: np.ndarray,
    table: PathTable,
) -> pl.DataFrame | None:
    """Per experiment: its result and error, the holdout effect of the fit without the experiments
    (``observed``: what the data alone say) and of the calibrated one over the same journeys."""
    if not targets:
        return None
    kept = weights > _MIN_WEIGHT
    total = float(weights[kept].sum())

    def lift(models: list[JourneyModel], t: _Target) -> float:
        return (
            sum(
                w
                * jm.nested_lift(
                    c.params,
                    c.held,
                    table.offsets,
                    table.codes,
                    t.weights,
                    c.decays(table),
                    c.sat,
                    c.use_h,
                    c.use_p,
                    c.pair_slots(),
                    t.code,
                )[0]
                for w, c, k in zip(weights, models, kept, strict=True)
                if k
            )
            / total
        )

    implied = [lift(candidates, t) for t in targets]
    return pl.DataFrame(
        {
            "channel": [e.channel for e in experiments],
            "start": pl.Series([e.start for e in experiments], dtype=pl.Datetime("us", "UTC")),
            "end": pl.Series([e.end for e in experiments], dtype=pl.Datetime("us", "UTC")),
            "incremental_conversions": [e.incremental_conversions for e in experiments],
            "std_error": [e.std_error for e in experiments],
            "observational_incremental": [lift(observed, t) for t in targets],
            "model_incremental": implied,
            "z": [(m - e.incremental_conversions) / e.std_error for m, e in zip(implied, experiments, strict=True)],
            "journeys": [float(t.weights.sum()) for t in targets],
        }
    )
