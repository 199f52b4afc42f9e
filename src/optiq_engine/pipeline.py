"""attribute(): frames -> encoded arrays -> kernels -> result frames."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import polars as pl

from .balance import balance_fit
from .channels import (
    DEFAULT_CHANNEL_RULES,
    clean_channel_labels,
    confusable_channels,
    derive_channels,
    direct_lookalikes,
)
from .config import DROP_DIRECT, TOUCH_RULES, AttributionConfig
from .errors import ConfigError, InputError, ModelError, OptiqWarning
from .frames import Normalized, normalize_conversions, normalize_touchpoints, warn_confusable_ids
from .grouping import NO_MASK, group_hashes, group_key_columns, hash_attempts, order_ties_by_id, stable_draws
from .identity import PERSON, IdentityStitch, stitch
from .kernels.chunks import balanced_chunks
from .kernels.credit import share_links
from .kernels.path_rules import kept_touches
from .kernels.paths import tail_ranges
from .kernels.sort import bucket_bits, sort_by_group_time
from .kernels.weights import channel_credit, heuristic_links
from .kernels.windows import journey_starts, link_rows, match_windows
from .layout import one_chunk, readonly
from .models import HEURISTIC_MODELS, AttributionModel, DataDrivenModel, FittedModel, HeuristicModel
from .models.base import resolve_models
from .models.conversion import FittedDataDriven
from .paths import PathTable, build_path_table
from .result import AttributionResult, LookbackCoverage, lookback_coverage
from .stages import Timed, stage_timer
from .timestamps import micros

__all__ = ["attribute", "run_attribution", "path_tables"]

log = logging.getLogger(__name__)

#: A run with data-driven models warns when more than this fraction of its conversions have touchpoints
#: (since their previous conversion) older than the lookback: the fits see those journeys cut.
CUT_WARNING = 0.10

_CHUNKS = 64
_MAX_CHANNELS = 1 << 23  # channel codes ride in 24 bits of the sort records
#: Test hook: mask applied to the primary group hash (a small value provokes collisions).
_HASH_MASK = NO_MASK


def attribute(
    touchpoints: Any,
    conversions: Any,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel | None = None,
    config: AttributionConfig | None = None,
    fitted: dict[str, FittedModel] | None = None,
    progress: bool = False,
    by: str | None = None,
    conversion_types: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> AttributionResult:
    """Attribute conversions to touchpoints with one or more models.

    Parameters
    ----------
    touchpoints, conversions
        Frames in the contract of docs/contract.md §1 (polars, pyarrow or pandas).
    models
        Model names (``"LINEAR"``) or model objects (``models.PositionBased(first=0.2, last=0.6)``);
        ``None`` runs every heuristic model.
    config
        An :class:`AttributionConfig`; ``options`` override its fields (``lookback=timedelta(days=7)``).
    fitted
        Data-driven models already fitted (``{"MARKOV": fit}``, e.g. on the path tables of every
        partition): their touchpoints are credited with these fits instead of fitting on this data.
    progress
        Show the running stage (a Rich progress display; it renders in terminals and notebooks).
    by
        ``"name"``: attribute each conversion type (the conversions' ``name`` column) on its own, with its own
        windows and data-driven fits; ``links``, ``credit`` and ``shares()`` get a ``conversion_name``
        column (docs/attribution.md "Conversion types", :mod:`optiq_engine.conversion_types`). Default None:
        all conversions together.
    conversion_types
        With ``by="name"``: per conversion name, options that replace these (``{"purchase": {"lookback":
        timedelta(days=90), "models": ["LAST_TOUCH"]}}``).
    **options
        :class:`AttributionConfig` fields, over ``config``'s (``lookback=timedelta(days=7)``,
        ``on_invalid="quarantine"``); an unknown name is a :class:`ConfigError`.

    Returns
    -------
    AttributionResult
        ``links``, ``credit``, ``unattributed`` (and ``quarantined`` rows, ``timings``).

    Raises
    ------
    ConfigError, ModelError
        Bad options or model names.
    SchemaError, InputError
        Missing columns, invalid rows (unless ``on_invalid="quarantine"``), duplicate ids.

    Examples
    --------
    >>> import optiq_engine as oq
    >>> data = oq.synthetic.generate(n_users=1_000, seed=1)
    >>> result = oq.attribute(data.touchpoints, data.conversions, models=["LINEAR", "LAST_TOUCH"])
    >>> result.credit.columns
    ['model', 'channel', 'conversions', 'value_micros']
    """
    cfg = (config or AttributionConfig()).with_options(**options)
    if by is not None or conversion_types is not None:
        return _attribute_by(touchpoints, conversions, models, cfg, fitted, by, conversion_types, progress)
    if not progress:
        return run_attribution(touchpoints, conversions, models=models, config=cfg, fitted=fitted)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("attribute", total=None)
        return run_attribution(
            touchpoints, conversions, models=models, config=cfg, fitted=fitted,
            on_stage=lambda stage: bar.update(task, description=f"attribute: {stage}"),
        )  # fmt: skip


def _attribute_by(
    touchpoints: Any,
    conversions: Any,
    models: Any,
    cfg: AttributionConfig,
    fitted: dict[str, FittedModel] | None,
    by: str | None,
    conversion_types: Mapping[str, Mapping[str, Any]] | None,
    progress: bool,
) -> AttributionResult:
    """:func:`attribute` with ``by`` (:func:`optiq_engine.conversion_types.attribute_by_name`)."""
    from .conversion_types import attribute_by_name, check_by

    check_by(by)
    if by is None:
        raise ConfigError("conversion_types needs by='name' (one attribution per conversion type)")
    if fitted:
        raise ConfigError("fitted= cannot be used with by='name' yet (a fit is per conversion type): leave one out")
    run = functools.partial(attribute_by_name, touchpoints, conversions, models=models, config=cfg,
                            conversion_types=conversion_types)  # fmt: skip
    if not progress:
        return run()
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("attribute", total=None)
        return run(on_stage=lambda stage: bar.update(task, description=f"attribute: {stage}"))


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
    matched = _match(touchpoints, conversions, cfg, timed, tails=bool(data_driven))
    tp, cv, channels, tp_order, tp_tss, tp_codes = (matched.tp, matched.cv, matched.channels, matched.tp_order,
                                                    matched.tp_tss, matched.tp_codes)  # fmt: skip
    cv_order, lo, hi, cv_value = matched.cv_order, matched.lo, matched.hi, matched.cv_value
    with timed("match"):
        counts, link_offsets, chunks = _link_offsets(lo, hi)
    is_direct = np.array([c in cfg.direct_channels for c in channels], dtype=np.bool_)
    _warn_direct_lookalikes(channels, cfg.direct_channels)
    fitted, journey_paths, tables = _fit_data_driven(data_driven, matched, cfg, dict(fitted or {}), timed)
    has_tp, quarantined, coverage = matched.has_tp, matched.quarantined, matched.coverage
    identity = matched.identity
    del matched  # the arrays below are freed as soon as the kernels are done with them
    with timed("weights"):
        heuristic = [m for m in chosen if isinstance(m, HeuristicModel)]
        h_weights, h_credit, position, count = _heuristic_links(
            heuristic, lo, hi, link_offsets, tp_tss, tp_codes, is_direct, cv_value, cfg, chunks
        )
        uncredited: dict[int, np.ndarray] = {}  # model index -> conversions (sorted) it credits to no channel
        weights, credit = h_weights, h_credit
        if data_driven:
            weights, credit, uncredited = _data_driven_links(
                chosen, h_weights, h_credit, fitted, journey_paths, tables, lo, hi, link_offsets, tp_codes,
                is_direct, cv_value, cv, cv_order, channels, chunks, timed,
            )  # fmt: skip
        del h_weights, h_credit
        tp_row, cv_row, link_code = link_rows(lo, link_offsets, tp_order, tp_codes, cv_order, chunks)
        del tp_tss, tp_codes, tp_order

    with timed("frames"):
        names = [m.name for m in chosen]
        dropped = {i: np.repeat(u, counts) for i, u in uncredited.items() if u.any()}  # per link
        links = _links_frame(
            tp, cv, names, channels, weights, credit, position, count, tp_row, cv_row, link_code, dropped,
            dense=dense_links,
        )  # fmt: skip
        credit_frame = _credit_frame(names, channels, *channel_credit(weights, credit, link_code, len(channels)))
        fitted = _credited_fits(fitted, credit_frame)
        baseline = {names[i]: u for i, u in uncredited.items() if u.any()}
        unattributed = _unattributed_frame(cv, cv_order, counts == 0, has_tp, baseline)

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


def _fit_data_driven(
    data_driven: list[Any], matched: Any, cfg: AttributionConfig, prefit: dict[str, Any], timed: Timed
) -> tuple[dict[str, Any], Any, Any]:
    """The data-driven models fitted (or ``prefit``'s fits), their journeys' paths and path tables; a warning
    when the lookback cuts many journeys short (docs/data_driven.md). Nothing without data-driven models."""
    if not data_driven:
        return {}, None, None
    with timed("fit"):
        fitted, journey_paths, tables = _fit(data_driven, matched, cfg, prefit)
    coverage = matched.coverage
    if coverage is not None and coverage.cut_fraction > CUT_WARNING:
        log.warning("%s", coverage.message())
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


def _link_offsets(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Links per conversion (``hi - lo``), their CSR offsets, and the conversions split in chunks of about
    equal link counts (one per parallel task)."""
    counts = hi - lo
    link_offsets = np.zeros(lo.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=link_offsets[1:])
    return counts, link_offsets, balanced_chunks(link_offsets, _CHUNKS)


def _warn_direct_lookalikes(channels: list[str], direct_channels: tuple[str, ...]) -> None:
    """Warn (at the caller of :func:`attribute`) about channels that look like a direct channel but are not one,
    and about channels that differ only by case or brackets."""
    lookalikes = direct_lookalikes(channels, direct_channels)
    others = [g for g in confusable_channels(channels) if not set(g) & set(lookalikes)]
    if others:  # "Email" and "email": two channels, each with part of the credit
        warnings.warn(
            f"channels {others[:3]} differ only by case or brackets: each is credited as a channel of its own; "
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
    heuristic: list[HeuristicModel],
    lo: np.ndarray,
    hi: np.ndarray,
    link_offsets: np.ndarray,
    tp_tss: np.ndarray,
    tp_codes: np.ndarray,
    is_direct: np.ndarray,
    cv_value: np.ndarray,
    cfg: AttributionConfig,
    chunks: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The heuristic models' weights and credited micros (one row per model), and every link's position and
    touchpoint count (:func:`~optiq_engine.kernels.weights.heuristic_links`, path rules applied)."""
    specs = [m.kernel_spec() for m in heuristic]
    kinds = np.array([s[0] for s in specs], dtype=np.int64)
    p1 = np.array([s[1] for s in specs], dtype=np.float64)
    p2 = np.array([s[2] for s in specs], dtype=np.float64)
    keep = _kept_touches(lo, hi, link_offsets, tp_codes, is_direct, cfg, chunks, ruled=bool(heuristic))
    return heuristic_links(lo, hi, link_offsets, tp_tss, tp_codes, is_direct, cv_value, kinds, p1, p2, keep, chunks)


def _data_driven_links(
    chosen: Sequence[AttributionModel],
    h_weights: np.ndarray,
    h_credit: np.ndarray,
    fitted: dict[str, FittedModel],
    journey_paths: dict[str, np.ndarray],
    tables: dict[str, PathTable],
    lo: np.ndarray,
    hi: np.ndarray,
    link_offsets: np.ndarray,
    tp_codes: np.ndarray,
    is_direct: np.ndarray,
    cv_value: np.ndarray,
    cv: pl.DataFrame,
    cv_order: np.ndarray,
    channels: list[str],
    chunks: np.ndarray,
    timed: Timed,
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Every model's weights and credited micros (rows in the order of ``chosen``: the heuristic models' rows
    of ``h_weights`` and ``h_credit``, each data-driven model's links credited by its fit's shares, balanced),
    and per data-driven model index the conversions (sorted) it credits to no channel. Each data-driven fit
    in ``fitted`` is replaced by one with its baseline conversions and balance."""
    weights = np.empty((len(chosen), link_offsets[-1]), dtype=np.float64)
    credit = np.empty((len(chosen), link_offsets[-1]), dtype=np.int64)
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
            rows = np.zeros(lo.shape[0], dtype=np.int64)
            path_of = journey_paths[model.name]
            rows[hi > lo] = np.where(path_of >= 0, path_of, shares.shape[0] - 1)
            rows = _baseline_draws(fit, tables[model.name], shares, rows, cv, cv_order)
        else:
            shares, rows = fit.shares_for(channels)[None, :], np.zeros(lo.shape[0], dtype=np.int64)
        with timed("balance"):  # a function of the fit alone: a prefit (partitions) keeps its own
            balance = fit.balance if fit.balance is not None else balance_fit(fit)
        weights[i], credit[i], uncredited[i] = share_links(
            lo, link_offsets, tp_codes, is_direct, cast(Any, model).remove_direct_if_not_all, cv_value,
            shares, rows, balance.scale_for(channels), chunks,
        )  # fmt: skip
        n_baseline = int(uncredited[i].sum())  # docs/data_driven.md §5: no links, unattributed
        fitted[model.name] = replace(fit, baseline_conversions=n_baseline, balance=balance)
    return weights, credit, uncredited


def _baseline_draws(
    fit: FittedDataDriven,
    table: PathTable,
    shares: np.ndarray,
    rows: np.ndarray,
    cv: pl.DataFrame,
    cv_order: np.ndarray,
) -> np.ndarray:
    """``rows`` with the baseline conversions sent to the last (all-zero) row of ``shares``: a conversion of
    path ``x`` is credited to the channels with probability ``Σ_c max(φ_c, 0) / p(x)`` (the model's
    probability that the channels caused it), decided by a draw keyed by its ``conversion_id`` and the
    model's seed (docs/data_driven.md §5): its expected credit is the channel's ``φ`` summed over journeys."""
    fraction = fit.credited_fraction(table, shares)
    draws = stable_draws(cv.get_column("conversion_id").gather(cv_order), fit.model.seed)
    return np.where(draws < fraction[rows], rows, shares.shape[0] - 1)


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


@dataclass
class _Matched:
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


def _match(touchpoints: Any, conversions: Any, cfg: AttributionConfig, timed: Any, *, tails: bool) -> _Matched:
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
        tp, channels, tp_code = _encode_channels(tp, cfg)
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
            tp_order, tp_hs, tp_tss, tp_h2s, tp_codes, tp_buckets, tp_coll, tp_ties = sort_by_group_time(
                *readonly(tp_h, tp_ts, tp_h2, tp_code), bits
            )
            cv_order, cv_hs, cv_tss, cv_h2s, _, cv_buckets, cv_coll, cv_ties = sort_by_group_time(
                *readonly(cv_h, cv_ts, cv_h2, np.zeros(cv.height, dtype=np.int32)), bits
            )
        with timed("match"):
            lo, hi, has_tp, cross_coll = match_windows(
                tp_hs, tp_tss, tp_h2s, tp_buckets, cv_hs, cv_tss, cv_h2s, cv_buckets,
                lookback, cfg.reset_after_conversion,
            )  # fmt: skip
        if tp_coll + cv_coll + cross_coll == 0:
            break
    del tp_h, tp_h2, tp_h2s, tp_code, cv_h, cv_h2, cv_h2s  # free what the rest does not need

    with timed("match"):
        tail_lo = tail_hi = None
        if tails:  # ranges end at time boundaries: ordering ties by id afterwards keeps them valid
            tail_lo, tail_hi = tail_ranges(tp_hs, tp_tss, tp_buckets, cv_hs, cv_tss, cv_buckets, lookback)
        if tp_ties:
            tp_order, tp_codes = order_ties_by_id(tp_order, tp_codes, tp_hs, tp_tss, tp.get_column("touchpoint_id"))
        if cv_ties:  # windows depend on times only: reordering tied conversions keeps lo, hi valid
            cv_order, _ = order_ties_by_id(cv_order, None, cv_hs, cv_tss, cv.get_column("conversion_id"))
        cv_value = cv.get_column("value_micros").to_numpy()[cv_order]
        start = journey_starts(tp_hs, tp_tss, cv_hs, cv_tss, hi, cfg.reset_after_conversion)
        coverage = lookback_coverage(start, lo, hi, tp_tss, cv_tss, cfg.lookback)
    return _Matched(
        tp=tp, cv=cv, quarantined={"touchpoints": tp_norm.quarantined, "conversions": cv_norm.quarantined},
        channels=channels, tp_order=tp_order, tp_tss=tp_tss, tp_codes=tp_codes, cv_order=cv_order,
        cv_value=cv_value, lo=lo, hi=hi, has_tp=has_tp, tail_lo=tail_lo, tail_hi=tail_hi, cv_tss=cv_tss,
        coverage=coverage, identity=identity,
    )  # fmt: skip


def _path_tables(
    models: Sequence[DataDrivenModel], m: _Matched, cfg: AttributionConfig
) -> dict[str, tuple[PathTable, np.ndarray]]:
    """Per model, the path table of the run's journeys (docs/data_driven.md §1) and the path row of every
    converting journey (-1: empty path), converting journeys in sorted-conversion order."""
    assert m.tail_lo is not None and m.tail_hi is not None
    converting = m.hi > m.lo
    starts = np.concatenate([m.lo[converting], m.tail_lo])
    ends = np.concatenate([m.hi[converting], m.tail_hi])
    n_conv = int(converting.sum())
    conv = np.zeros(starts.shape[0], dtype=np.float64)
    conv[:n_conv] = 1.0
    value = np.zeros(starts.shape[0], dtype=np.int64)
    value[:n_conv] = m.cv_value[converting]
    built: dict[tuple[str, bool], tuple[PathTable, np.ndarray]] = {}
    out = {}
    for model in models:
        key = (model.transform, model.remove_direct_if_not_all)
        if key not in built:
            table, journey_path = build_path_table(
                starts, ends, m.tp_codes, m.channels, conv, 1.0 - conv, value,
                transform=model.transform, remove_direct_if_not_all=model.remove_direct_if_not_all,
                direct_channels=cfg.direct_channels,
            )  # fmt: skip
            built[key] = (table, journey_path[:n_conv])
        out[model.name] = built[key]
    return out


def _fit(
    models: list[DataDrivenModel], m: _Matched, cfg: AttributionConfig, prefit: dict[str, FittedModel]
) -> tuple[dict[str, FittedModel], dict[str, np.ndarray], dict[str, PathTable]]:
    """Fit every data-driven model on the run's journeys, or take its ``prefit``.

    Returns the fits, per model the path row of every converting journey, and per model the path table.
    """
    out: dict[str, FittedModel] = {}
    for model in models:
        given = prefit.get(model.name)
        if given is not None and given.model != model:
            raise ModelError(f"fitted[{model.name!r}] was fitted as {given.model!r}, not {model!r}")
    tables = _path_tables(models, m, cfg)
    for model in models:
        given = prefit.get(model.name)
        table = tables[model.name][0]
        periods = {}
        if given is None and getattr(model, "wants_periods", False):  # DATA_DRIVEN's experiments
            from .models.conversion import experiment_periods

            # the data-driven models' matches carry the tails and conversion times (optional in the type)
            periods["periods"] = experiment_periods(cast(Any, model), m.lo, m.hi, cast(Any, m.tail_lo), cast(Any, m.tail_hi),
                                                    m.tp_codes, m.tp_tss, cast(Any, m.cv_tss), m.channels,
                                                    cfg.direct_channels)  # fmt: skip
        out[model.name] = (
            given if given is not None else model.fit(table, direct_channels=cfg.direct_channels, **periods)
        )
    return out, {k: v[1] for k, v in tables.items()}, {k: v[0] for k, v in tables.items()}


def path_tables(
    touchpoints: Any,
    conversions: Any,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel,
    config: AttributionConfig | None = None,
    **options: Any,
) -> dict[str, PathTable]:
    """The path table that each data-driven model in ``models`` would be fitted on, without fitting.

    The same tables as ``attribute(...).fitted[name].paths``; the tables of disjoint sets of users add up
    with :meth:`PathTable.concat` (see :mod:`optiq_engine.paths.partial`).

    Parameters
    ----------
    touchpoints, conversions
        Frames in the contract of docs/contract.md §1.
    models
        Data-driven models (names or objects); required.
    config
        The options (default None: ``AttributionConfig()``); ``options`` override its fields.
    **options
        :class:`AttributionConfig` fields.

    Returns
    -------
    dict of str to PathTable
        Per model name, its path table (transformed with its ``transform``).

    Raises
    ------
    ModelError
        A model that is not data-driven, unknown, or given twice.
    ConfigError, SchemaError, InputError
        As :func:`attribute`.
    """
    cfg = (config or AttributionConfig()).with_options(**options)
    chosen = resolve_models(models, cfg, default=())
    bad = [mo.name for mo in chosen if not isinstance(mo, DataDrivenModel)]
    if bad:
        raise ModelError(f"path_tables() takes data-driven models only, got {bad}")
    m = _match(touchpoints, conversions, cfg, stage_timer({}, None), tails=True)
    return {name: table for name, (table, _) in _path_tables(chosen, m, cfg).items()}  # type: ignore[arg-type]


def _encode_channels(tp: pl.DataFrame, cfg: AttributionConfig) -> tuple[pl.DataFrame, list[str], np.ndarray]:
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


def _kept_touches(
    lo: np.ndarray,
    hi: np.ndarray,
    link_offsets: np.ndarray,
    tp_codes: np.ndarray,
    is_direct: np.ndarray,
    cfg: AttributionConfig,
    chunks: np.ndarray,
    *,
    ruled: bool,
) -> np.ndarray:
    """Per link, whether the heuristic models credit its touch (docs/attribution.md "Path rules"); an empty
    array when the config has no path rule (every touch credited: the kernels take their usual path)."""
    cap = cfg.max_touchpoints or 0
    if not ruled or (cfg.touch_rule == "all" and cfg.drop_direct == "never" and cap == 0):
        return np.empty(0, dtype=np.bool_)
    return kept_touches(
        lo, hi, link_offsets, tp_codes, is_direct, TOUCH_RULES.index(cfg.touch_rule),
        DROP_DIRECT.index(cfg.drop_direct), cap, chunks,
    )  # fmt: skip


def _links_frame(
    tp: pl.DataFrame,
    cv: pl.DataFrame,
    names: list[str],
    channels: list[str],
    weights: np.ndarray,
    credit: np.ndarray,
    position: np.ndarray,
    count: np.ndarray,
    tp_row: np.ndarray,
    cv_row: np.ndarray,
    link_code: np.ndarray,
    dropped: dict[int, np.ndarray],
    *,
    dense: bool = False,
) -> pl.DataFrame:
    """The long links frame: one chunk per model sharing the id, position and channel columns.

    ``dropped[i]`` (bool per link) marks the links of conversions that model ``i`` credits to no channel:
    left out, or with ``dense`` kept with a null weight and credit."""
    shared = pl.DataFrame(
        [
            one_chunk(cv.get_column("conversion_id")).gather(cv_row),
            one_chunk(tp.get_column("touchpoint_id")).gather(tp_row),
            pl.Series("position", position),
            pl.Series("touchpoint_count", count),
            pl.Series("channel", link_code.astype(np.uint32)).cat.to(pl.Enum(channels)),
        ]
    )
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
        block(i)
        .with_columns(pl.lit(name, dtype=model_dtype).alias("model"))
        .select(
            "conversion_id",
            "touchpoint_id",
            "model",
            "weight",
            "position",
            "touchpoint_count",
            "credited_value_micros",
            "channel",
        )
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
