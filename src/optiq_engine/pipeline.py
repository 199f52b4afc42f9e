"""One attribution run: frames -> encoded arrays -> kernels -> result frames (:func:`run_attribution`)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import polars as pl

from .balance import balance_fit
from .channels import (
    confusable_channels,
    direct_lookalikes,
    missing_lookalikes,
)
from .config import DROP_DIRECT, TOUCH_RULES, AttributionConfig
from .errors import ModelError, OptiqWarning
from .grouping import stable_draws
from .kernels.chunks import balanced_chunks
from .kernels.credit import share_links, window_fraction
from .kernels.path_rules import kept_touches
from .kernels.weights import channel_credit, heuristic_links
from .kernels.windows import link_rows
from .layout import one_chunk
from .matching import Matched, match_inputs
from .models import HEURISTIC_MODELS, AttributionModel, DataDrivenModel, FittedModel, HeuristicModel
from .models.base import resolve_models
from .models.conversion import FittedDataDriven
from .paths import PathTable
from .paths.partial import journey_tables
from .result import LINK_COLUMNS, AttributionResult
from .stages import Timed, stage_timer

__all__ = ["run_attribution"]

log = logging.getLogger(__name__)

#: A run with data-driven models fitted on the lookback windows (MARKOV, SHAPLEY, ``fit_on="windows"``) warns
#: when more than this fraction of its conversions have touchpoints (since their previous conversion) older
#: than the lookback: those fits see the journeys cut.
CUT_WARNING = 0.10

#: DATA_DRIVEN warns when more than this fraction of its conversions' credit belongs to channels seen only
#: before the lookback (fitted on whole journeys, credited in the window).
OLDER_CREDIT_WARNING = 0.10

_CHUNKS = 64


def run_attribution(
    touchpoints: Any,
    conversions: Any,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel | None,
    config: AttributionConfig,
    on_stage: Callable[[str], None] | None = None,
    fitted: dict[str, FittedModel] | None = None,
    dense_links: bool = False,
) -> AttributionResult:
    """:func:`attribute` with a resolved config, calling ``on_stage(name)`` as each stage starts.

    With ``dense_links``, every model's block of ``links`` holds the same (conversion, touchpoint) pairs in
    the same order (Spark's wide records): a conversion a data-driven model credits to no channel keeps its
    rows there with a null ``weight`` and ``credited_value_micros`` instead of having none.

    Parameters
    ----------
    touchpoints, conversions
        Frames in the contract of docs/contract.md §1, or validated ones (:class:`~optiq_engine.frames.Normalized`).
    models
        As :func:`attribute` (None: every heuristic model).
    config
        The run's options, already resolved.
    on_stage, fitted
        Called with each stage's name as it starts; as :func:`attribute`, fits to credit with.
    dense_links
        See above.

    Returns
    -------
    AttributionResult

    Raises
    ------
    ModelError
        A model name that is unknown or given twice, a model that is neither heuristic nor data-driven, a
        ``fitted`` entry fitted with other parameters, or a fit that fails.
    ConfigError
        A model's options are invalid, or a ``channel`` column that does not hold strings.
    SchemaError, InputError
        As :func:`attribute` (an :class:`InputError` also for too many distinct channels).
    """
    cfg, timings = config, dict[str, float]()
    chosen = _supported(resolve_models(models, cfg, default=HEURISTIC_MODELS))
    timed = stage_timer(timings, on_stage)
    data_driven = [m for m in chosen if isinstance(m, DataDrivenModel)]
    matched = match_inputs(touchpoints, conversions, cfg, timed, tails=bool(data_driven))
    tp, cv, channels, cv_order = matched.tp, matched.cv, matched.channels, matched.cv_order
    with timed("match"):
        at = _layout(matched, cfg)
    _warn_direct_lookalikes(channels, cfg.direct_channels)
    _warn_no_shared_users(tp, cv, matched.has_tp)
    fitted, journey_paths, tables = _fit_data_driven(data_driven, matched, cfg, dict(fitted or {}), timed)
    tp_order, tp_tss, has_tp, quarantined = matched.tp_order, matched.tp_tss, matched.has_tp, matched.quarantined
    coverage, identity = matched.coverage, matched.identity
    del matched  # the arrays below are freed as soon as the kernels are done with them
    with timed("weights"):
        heuristic = [m for m in chosen if isinstance(m, HeuristicModel)]
        h_weights, h_credit, position, count = _heuristic_links(heuristic, at, tp_tss, cfg)
        uncredited: dict[int, np.ndarray] = {}  # model index -> conversions (sorted) it credits to no channel
        weights, credit = h_weights, h_credit
        if data_driven:
            fits = _Fits(fitted, journey_paths, tables)
            weights, credit, uncredited = _data_driven_links(
                chosen, h_weights, h_credit, fits, at, cv, cv_order, channels, timed
            )
        del h_weights, h_credit
        tp_row, cv_row, link_code = link_rows(at.lo, at.link_offsets, tp_order, at.tp_codes, cv_order, at.chunks)
        del tp_tss, tp_order

    with timed("frames"):
        names = [m.name for m in chosen]
        dropped = {i: np.repeat(u, at.counts) for i, u in uncredited.items() if u.any()}  # per link
        shared = _link_columns(tp, cv, channels, position, count, tp_row, cv_row, link_code)
        links = _links_frame(shared, names, weights, credit, dropped, dense=dense_links)
        credit_frame = _credit_frame(names, channels, *channel_credit(weights, credit, link_code, len(channels)))
        fitted = _credited_fits(fitted, credit_frame)
        baseline = {names[i]: u for i, u in uncredited.items() if u.any()}
        unattributed = _unattributed_frame(cv, cv_order, at.counts == 0, has_tp, baseline)
    return AttributionResult(
        links=links,
        credit=credit_frame,
        unattributed=unattributed,
        models=chosen,
        config=cfg,
        fitted=fitted,
        n_conversions=cv.height,
        quarantined=quarantined,
        timings=timings,
        lookback_coverage=coverage,
        identity=identity,
    )


@dataclass(frozen=True)
class _Layout:
    """The links of a run, as the weight kernels read them: conversion ``i`` (sorted) links the sorted
    touchpoints ``lo[i]:hi[i]``, its links are rows ``link_offsets[i]:link_offsets[i + 1]``, ``chunks``
    splits the conversions into parallel tasks of about equal link counts."""

    lo: np.ndarray
    hi: np.ndarray
    counts: np.ndarray  # links per conversion
    link_offsets: np.ndarray
    chunks: np.ndarray
    tp_codes: np.ndarray  # channel code per sorted touchpoint
    is_direct: np.ndarray  # per channel code
    cv_value: np.ndarray  # value_micros per sorted conversion


@dataclass(frozen=True)
class _Fits:
    """The data-driven models' fits, each converting journey's path row and the path tables, by model name."""

    fitted: dict[str, FittedModel]
    journey_paths: dict[str, np.ndarray]
    tables: dict[str, PathTable]


def _fit_data_driven(
    data_driven: list[Any], matched: Any, cfg: AttributionConfig, prefit: dict[str, Any], timed: Timed
) -> tuple[dict[str, Any], Any, Any]:
    """The data-driven models fitted (or ``prefit``'s fits), their journeys' paths and path tables; a warning
    when the lookback cuts many journeys short and a model is fitted on the windows (docs/contract.md §2.1).
    Nothing without data-driven models."""
    if not data_driven:
        return {}, None, None
    with timed("fit"):
        fitted, journey_paths, tables = _fit(data_driven, matched, cfg, prefit)
    coverage = matched.coverage
    window_fits = [m.name for m in data_driven if getattr(fitted[m.name], "history", "windows") == "windows"]
    if window_fits and coverage is not None and coverage.cut_fraction > CUT_WARNING:
        log.warning("%s", coverage.message(window_fits))
    return fitted, journey_paths, tables


def _credited_fits(fitted: dict[str, Any], credit_frame: pl.DataFrame) -> dict[str, Any]:
    """Each fit with the conversions and value its links credit (one credit per model x channel)."""
    return {name: _credited_fit(fit, credit_frame.filter(pl.col("model") == name)) for name, fit in fitted.items()}


def _supported(chosen: tuple[AttributionModel, ...]) -> tuple[AttributionModel, ...]:
    """``chosen``, when :func:`attribute` can run every one of them (heuristic and data-driven models)."""
    unsupported = [m.name for m in chosen if not isinstance(m, (HeuristicModel, DataDrivenModel))]
    if unsupported:
        raise ModelError(f"model(s) {unsupported} cannot run in attribute() yet")
    return chosen


def _layout(matched: Matched, cfg: AttributionConfig) -> _Layout:
    """The run's links: per conversion ``hi - lo`` of them, their CSR offsets, and the conversions split in
    chunks of about equal link counts (one per parallel task)."""
    counts = matched.hi - matched.lo
    link_offsets = np.zeros(matched.lo.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=link_offsets[1:])
    is_direct = np.array([c in cfg.direct_channels for c in matched.channels], dtype=np.bool_)
    chunks = balanced_chunks(link_offsets, _CHUNKS)
    return _Layout(matched.lo, matched.hi, counts, link_offsets, chunks, matched.tp_codes, is_direct, matched.cv_value)


def _warn_direct_lookalikes(channels: list[str], direct_channels: tuple[str, ...]) -> None:
    """Warn (at the caller of :func:`attribute`) about channels spelled like missing values, channels that look
    like a direct channel but are not one, and channels that differ only by case, brackets or invisible
    characters."""
    missing = missing_lookalikes(channels)
    if missing:  # pandas' .astype(str) of NaN, a CSV's "null": credited as channels of their own
        warnings.warn(
            f"channels {missing} are spelled like missing values: they are credited as channels of their own; "
            "give them as null to derive them from the UTM parameters and click ids (docs/contract.md §4)",
            OptiqWarning,
            stacklevel=4,
        )
    lookalikes = direct_lookalikes(channels, direct_channels)
    others = [g for g in confusable_channels(channels) if not set(g) & set(lookalikes)]
    if others:  # "Email" and "email": two channels, each with part of the credit
        warnings.warn(
            f"channels {others[:3]} differ only by case, brackets or invisible characters: each is credited as a channel of its own; "
            "if they are one channel, give them one name (docs/contract.md §4)",
            OptiqWarning,
            stacklevel=4,
        )
    if lookalikes:  # "Direct" from a GA export: LAST_NON_DIRECT would credit it as a channel like any other
        warnings.warn(
            f"channels {lookalikes} look like the direct channels {list(direct_channels)} but are not them: "
            "LAST_NON_DIRECT and the direct path rules treat them as any other channel; rename them or pass "
            f"direct_channels={tuple(direct_channels) + tuple(lookalikes)!r} (docs/attribution.md)",
            OptiqWarning,
            stacklevel=4,
        )


def _heuristic_links(
    heuristic: list[HeuristicModel], at: _Layout, tp_tss: np.ndarray, cfg: AttributionConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The heuristic models' weights and credited micros (one row per model), and every link's position and
    touchpoint count (:func:`~optiq_engine.kernels.weights.heuristic_links`, path rules applied)."""
    specs = [m.kernel_spec() for m in heuristic]
    kinds = np.array([s[0] for s in specs], dtype=np.int64)
    p1 = np.array([s[1] for s in specs], dtype=np.float64)
    p2 = np.array([s[2] for s in specs], dtype=np.float64)
    keep = _kept_touches(at, cfg, ruled=bool(heuristic))
    return heuristic_links(
        at.lo, at.hi, at.link_offsets, tp_tss, at.tp_codes, at.is_direct, at.cv_value, kinds, p1, p2, keep, at.chunks
    )


def _data_driven_links(
    chosen: Sequence[AttributionModel],
    h_weights: np.ndarray,
    h_credit: np.ndarray,
    fits: _Fits,
    at: _Layout,
    cv: pl.DataFrame,
    cv_order: np.ndarray,
    channels: list[str],
    timed: Timed,
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Every model's weights and credited micros (rows in the order of ``chosen``: the heuristic models' rows
    of ``h_weights`` and ``h_credit``, each data-driven model's links credited by its fit's shares, balanced),
    and per data-driven model index the conversions (sorted) it credits to no channel. Each data-driven fit
    in ``fits.fitted`` is replaced by one with its baseline conversions and balance."""
    fitted, journey_paths, tables, lo, hi = fits.fitted, fits.journey_paths, fits.tables, at.lo, at.hi
    weights = np.empty((len(chosen), at.link_offsets[-1]), dtype=np.float64)
    credit = np.empty((len(chosen), at.link_offsets[-1]), dtype=np.int64)
    uncredited: dict[int, np.ndarray] = {}
    hi_row = 0
    for i, model in enumerate(chosen):
        if isinstance(model, HeuristicModel):
            weights[i], credit[i] = h_weights[hi_row], h_credit[hi_row]
            hi_row += 1
            continue
        fit = fitted[model.name]
        if isinstance(fit, FittedDataDriven):  # per-journey shares: one row per path
            shares = fit.path_shares(tables[model.name])
            path_of = journey_paths[model.name]  # per conversion: its journey's row (-1: none)
            rows = np.where((hi > lo) & (path_of >= 0), path_of, shares.shape[0] - 1)
            rows, older = _baseline_draws(fit, tables[model.name], shares, rows, at, cv, cv_order)
            fit = fitted[model.name] = replace(fit, credit_before_lookback=older)
            _warn_older_credit(model.name, older)
        else:
            shares, rows = fit.shares_for(channels)[None, :], np.zeros(lo.shape[0], dtype=np.int64)
        with timed("balance"):  # a function of the fit alone: a prefit (partitions) keeps its own
            balance = fit.balance if fit.balance is not None else balance_fit(fit)
        remove_direct = cast(Any, model).remove_direct_if_not_all
        weights[i], credit[i], uncredited[i] = share_links(
            lo,
            at.link_offsets,
            at.tp_codes,
            at.is_direct,
            remove_direct,
            at.cv_value,
            shares,
            rows,
            balance.scale_for(channels),
            at.chunks,
        )
        n_baseline = int(uncredited[i].sum())  # docs/data_driven.md §5: no links, unattributed
        fitted[model.name] = replace(fit, baseline_conversions=n_baseline, balance=balance)
    return weights, credit, uncredited


def _baseline_draws(
    fit: FittedDataDriven,
    table: PathTable,
    shares: np.ndarray,
    rows: np.ndarray,
    at: _Layout,
    cv: pl.DataFrame,
    cv_order: np.ndarray,
) -> tuple[np.ndarray, float]:
    """``rows`` with the baseline conversions sent to the last (all-zero) row of ``shares``: a conversion of
    path ``x`` is credited to the channels of its window with probability ``Σ_{c in window} max(φ_c, 0) /
    p(x)`` (the model's probability that those channels caused it; every channel of ``x`` when the fit
    reads the windows), decided by a draw keyed by its ``conversion_id`` and the model's seed
    (docs/data_driven.md §5): its expected credit is the channel's ``φ`` summed over the journeys where the
    window holds it. Also returns the fraction of the conversions' expected credit that goes to channels seen
    only before the lookback (not credited)."""
    p = fit.path_probability(table)
    fraction = window_fraction(at.lo, at.hi, at.tp_codes, shares, rows, p)
    draws = stable_draws(cv.get_column("conversion_id").gather(cv_order), fit.model.seed)
    whole = np.clip(np.divide(shares.sum(axis=1), p, out=np.zeros_like(p), where=p > 0), 0.0, 1.0)[rows].sum()
    older = 1.0 - float(fraction.sum()) / whole if whole > 0 else 0.0
    return np.where(draws < fraction, rows, shares.shape[0] - 1), max(older, 0.0)


def _warn_older_credit(name: str, older: float) -> None:
    """One warning line when a data-driven model fitted on whole journeys gives more than
    :data:`OLDER_CREDIT_WARNING` of its conversions' credit to channels seen only before the lookback."""
    if older > OLDER_CREDIT_WARNING:
        warnings.warn(
            f"{name}: {older:.0%} of the credit its fit gives the conversions belongs to channels seen only before "
            "the lookback: no model credits them, so the links, credit and shares() leave it out "
            f"(fitted[{name!r}].credit_before_lookback; a longer lookback credits them: docs/data_driven.md §5)",
            OptiqWarning,
            stacklevel=5,
        )


def _credited_fit(fit: FittedModel, credit: pl.DataFrame) -> FittedModel:
    """``fit`` with its ``channel_credit``'s ``conversions`` and ``value_micros`` replaced by the run's
    credit (0 for a channel the links did not credit) and ``credit_gap`` = half the L1 distance between
    the credited shares and the fit's ``share``."""
    credit = credit.select(pl.col("channel").cast(pl.String), "conversions", "value_micros")
    frame = fit.channel_credit
    columns = frame.columns
    credited_here = pl.col("channel").is_in(credit.get_column("channel").implode())
    frame = (
        frame.drop("conversions", "value_micros")
        .join(credit, on="channel", how="left", maintain_order="left")
        .with_columns(
            pl.when(credited_here).then(pl.col(c)).otherwise(0).alias(c) for c in ("conversions", "value_micros")
        )
        .select(columns)
    )
    conv = frame.get_column("conversions").to_numpy()
    total = float(credit.get_column("conversions").sum())
    credited = conv / total if total > 0 else np.zeros_like(conv)
    gap = 0.5 * (float(np.abs(credited - fit.shares).sum()) + (1.0 - credited.sum() if total > 0 else 0.0))
    return replace(fit, channel_credit=frame, credit_gap=gap)


def _fit(
    models: list[DataDrivenModel], m: Matched, cfg: AttributionConfig, prefit: dict[str, FittedModel]
) -> tuple[dict[str, FittedModel], dict[str, np.ndarray], dict[str, PathTable]]:
    """Fit every data-driven model on the run's journeys, or take its ``prefit``.

    Returns the fits, per model the path row of every converting journey, and per model the path table
    (of the history the fit read: docs/data_driven.md §1).
    """
    out: dict[str, FittedModel] = {}
    for model in models:
        given = prefit.get(model.name)
        if given is not None and given.model != model:
            raise ModelError(f"fitted[{model.name!r}] was fitted as {given.model!r}, not {model!r}")
    tables = journey_tables(models, m, cfg)
    rows, chosen = {}, {}
    for model in models:
        variants = tables[model.name]
        fit = prefit.get(model.name)
        if fit is None:
            inputs: dict[str, Any] = {}
            for history, (table, _) in variants.items():  # the fitted history first, then "windows", "reference"
                key = "table" if not inputs else history
                inputs[key] = table
                if history != "reference" and getattr(model, "wants_periods", False):  # DATA_DRIVEN's experiments
                    inputs["periods" if key == "table" else "window_periods"] = _periods(model, m, cfg, history)
            fit = model.fit(inputs.pop("table"), direct_channels=cfg.direct_channels, **inputs)
        out[model.name] = fit
        chosen[model.name], rows[model.name] = variants[getattr(fit, "history", None) or next(iter(variants))]
    return out, rows, chosen


def _periods(model: Any, m: Matched, cfg: AttributionConfig, history: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per experiment of DATA_DRIVEN ``model``, the journeys of each row of its ``history``'s table that fall
    in the experiment's period."""
    from .models.conversion import experiment_periods

    naive = [e.channel for e in model.experiments if e.naive]
    if cfg.timezone not in (None, "UTC") and naive:
        warnings.warn(
            f"experiment(s) on {', '.join(map(repr, naive))}: their periods' dates or naive datetimes are read as "
            f"UTC, while the data's naive times are read in {cfg.timezone}: give aware datetimes "
            f"(datetime(2026, 3, 1, tzinfo=ZoneInfo({cfg.timezone!r}))) to say which",
            OptiqWarning,
            stacklevel=7,  # the caller of attribute()
        )
    lo, tail_lo, tail_hi = m.fit_ranges(whole=history == "journeys")
    return experiment_periods(
        model,
        lo,
        m.hi,
        tail_lo,
        tail_hi,
        m.tp_codes,
        m.tp_tss,
        cast(Any, m.cv_tss),  # the data-driven models' matches carry the conversion times (optional in the type)
        m.channels,
        cfg.direct_channels,
    )


def _kept_touches(at: _Layout, cfg: AttributionConfig, *, ruled: bool) -> np.ndarray:
    """Per link, whether the heuristic models credit its touch (docs/attribution.md "Path rules"); an empty
    array when the config has no path rule (every touch credited: the kernels take their usual path)."""
    cap = cfg.max_touchpoints or 0
    if not ruled or (cfg.touch_rule == "all" and cfg.drop_direct == "never" and cap == 0):
        return np.empty(0, dtype=np.bool_)
    rules = TOUCH_RULES.index(cfg.touch_rule), DROP_DIRECT.index(cfg.drop_direct), cap
    return kept_touches(at.lo, at.hi, at.link_offsets, at.tp_codes, at.is_direct, *rules, at.chunks)


def _link_columns(
    tp: pl.DataFrame,
    cv: pl.DataFrame,
    channels: list[str],
    position: np.ndarray,
    count: np.ndarray,
    tp_row: np.ndarray,
    cv_row: np.ndarray,
    link_code: np.ndarray,
) -> pl.DataFrame:
    """The columns every model's links share: ids, position, touchpoint count and channel, one row per link."""
    return pl.DataFrame(
        [
            one_chunk(cv.get_column("conversion_id")).gather(cv_row),
            one_chunk(tp.get_column("touchpoint_id")).gather(tp_row),
            pl.Series("position", position),
            pl.Series("touchpoint_count", count),
            pl.Series("channel", link_code.astype(np.uint32)).cat.to(pl.Enum(channels)),
        ]
    )


def _links_frame(
    shared: pl.DataFrame,
    names: list[str],
    weights: np.ndarray,
    credit: np.ndarray,
    dropped: dict[int, np.ndarray],
    *,
    dense: bool = False,
) -> pl.DataFrame:
    """The long links frame: one chunk per model sharing the columns of :func:`_link_columns`.

    ``dropped[i]`` (bool per link) marks the links of conversions that model ``i`` credits to no channel:
    left out, or with ``dense`` kept with a null weight and credit."""
    model_dtype = pl.Enum(names)

    def block(i: int) -> pl.DataFrame:
        weight, micros = pl.Series("weight", weights[i]), pl.Series("credited_value_micros", credit[i])
        if i not in dropped:
            return shared.with_columns(weight, micros)
        if dense:
            gone = np.flatnonzero(dropped[i])
            return shared.with_columns(weight.scatter(gone, None), micros.scatter(gone, None))
        keep = pl.Series(~dropped[i])
        return shared.filter(keep).with_columns(weight.filter(keep), micros.filter(keep))

    parts = [
        block(i).with_columns(pl.lit(name, dtype=model_dtype).alias("model")).select(LINK_COLUMNS)
        for i, name in enumerate(names)
    ]
    return pl.concat(parts, how="vertical", rechunk=False)


def _credit_frame(
    names: list[str], channels: list[str], conversions: np.ndarray, value: np.ndarray, overflow: np.ndarray
) -> pl.DataFrame:
    """Per model x channel credit; a sum of micros beyond int64 is null (and logged), never wrapped."""
    m, c = conversions.shape
    if overflow.any():
        log.warning("credited value of %d (model, channel) cells exceeds 2**63 - 1 micros: left null", overflow.sum())
    return pl.DataFrame(
        {
            "model": pl.Series(np.repeat(names, c)).cast(pl.Enum(names)),
            "channel": pl.Series(np.tile(channels, m) if m else [], dtype=pl.String).cast(pl.Enum(channels)),
            "conversions": conversions.reshape(-1),
            "value_micros": pl.Series(value.reshape(-1)).scatter(np.flatnonzero(overflow.reshape(-1)), None),
        }
    )


def _warn_no_shared_users(tp: pl.DataFrame, cv: pl.DataFrame, has_tp: np.ndarray) -> None:
    """Warn when there are touchpoints and conversions but no conversion's user has a touchpoint: every
    conversion is unattributed, most often because the two frames spell the ids differently (an integer
    column read from one file, zero-padded strings from the other)."""
    if tp.is_empty() or cv.is_empty() or has_tp.any():
        return
    example = {
        name: frame.get_column("anon_id").drop_nulls().head(1).to_list() for name, frame in (("tp", tp), ("cv", cv))
    }
    warnings.warn(
        f"none of the {cv.height:,} conversions' users has a touchpoint (organization, site and anon_id "
        f"compared): every conversion is unattributed. Check that both frames spell the ids alike: "
        f"conversions' anon_id {example['cv']}, touchpoints' {example['tp']} (an integer column loses leading "
        "zeros; docs/contract.md §1.3)",
        OptiqWarning,
        stacklevel=4,
    )


#: ``reason`` of a conversion that a data-driven model credits to no channel (docs/data_driven.md §5).
BASELINE_REASON = "baseline_conversion"


def _unattributed_frame(
    cv: pl.DataFrame, cv_order: np.ndarray, empty: np.ndarray, has_tp: np.ndarray, baseline: dict[str, np.ndarray]
) -> pl.DataFrame:
    """Conversions without links: for every model (``model`` null; no eligible touchpoint), and per
    data-driven model for the conversions it credits to no channel (``baseline[name]``, bool per sorted
    conversion; ``reason`` :data:`BASELINE_REASON`)."""
    rows = [cv_order[empty]]
    reasons = [np.where(has_tp[empty], "outside_window", "no_touchpoints")]
    models: list[str | None] = [None] * int(empty.sum())
    for name, mask in baseline.items():
        rows.append(cv_order[mask])
        reasons.append(np.full(int(mask.sum()), BASELINE_REASON))
        models += [name] * int(mask.sum())
    cols = ["conversion_id", "anon_id", "occurred_at", "value_micros"]
    cols += [c for c in ("organization_id", "site_id", "name") if c in cv.columns]
    return (
        cv.select(cols)[np.concatenate(rows)]
        .with_columns(
            pl.Series("reason", np.concatenate(reasons), dtype=pl.String),
            pl.Series("model", models, dtype=pl.String),
        )
        .sort("occurred_at", "conversion_id", pl.col("model"), nulls_last=False)
    )
