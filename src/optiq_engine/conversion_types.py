"""Credit per conversion type: every conversion ``name`` attributed on its own (docs/attribution.md,
"Conversion types").

``attribute(touchpoints, conversions, by="name")`` validates both frames once, then attributes the
conversions of each name (its *type*: ``sign_up``, ``purchase``) against all the touchpoints, with the
type's own options and models (``conversion_types={"purchase": {"lookback": ..., "models": [...]}}``), as if
the other types' conversions were not there:

- windows: ``reset_after_conversion`` resets on the previous conversion *of the same type* only, so a
  purchase's window is not cut by a sign-up (a touch may be credited once per type);
- data-driven fits: on the type's journeys: its converting ones, and per user the touches after the user's
  last conversion of the type (all of them for a user without one) as the non-converting one;
- a conversion whose ``name`` is null, empty or blank is a type of its own, ``conversion_name`` null.

The result's ``links``, ``credit`` and ``unattributed`` carry a ``conversion_name`` column (first), so
``result.shares()`` is per (type, model); ``result.types[name]`` is each type's own result.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any

import polars as pl

from .config import AttributionConfig
from .errors import ColumnNotFoundError, ConfigError, ConfusableIdWarning, ModelError, SchemaError, did_you_mean
from .frames import Normalized
from .matching import encode_channels, normalize_inputs
from .models import HEURISTIC_MODELS, AttributionModel
from .models.base import resolve_models
from .pipeline import run_attribution
from .result import TYPE_COLUMN, AttributionResult

__all__ = ["BY", "TYPE_COLUMN", "attribute_by_name", "conversion_names", "type_configs"]

log = logging.getLogger(__name__)

#: The values ``attribute(by=...)`` takes: the conversions' column whose values are the types.
BY = ("name",)
#: Options that read the input frames, applied once to all the types: they cannot differ per type.
SHARED_OPTIONS = (
    "on_invalid",
    "channel_rules",
    "timezone",
    "timestamp_format",
    "value_column",
    "value_unit",
    "identity",
    "identity_key",
)

Models = Sequence[str | AttributionModel] | str | AttributionModel | None


def check_by(by: str | None) -> None:
    """Refuse a ``by`` other than None or one of :data:`BY`."""
    if by is not None and by not in BY:
        raise ConfigError(
            f"by must be None or 'name' (the conversions' name column: one attribution per conversion type), got {by!r}"
        )


def type_configs(
    config: AttributionConfig, models: Models, conversion_types: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, tuple[AttributionConfig, Models]]:
    """Per conversion name given in ``conversion_types``, its config (``config`` with the name's options) and
    models (the name's ``models``, else ``models``); every override checked before anything runs.

    Parameters
    ----------
    config
        The run's options, which every name's overrides start from.
    models
        The run's models (names or objects; None: the heuristics), for names without ``models`` of their own.
    conversion_types
        Per conversion name, ``AttributionConfig`` fields to replace (not :data:`SHARED_OPTIONS`) and
        ``models``; None: no entry.

    Returns
    -------
    dict
        ``{name: (config, models)}`` for each name of ``conversion_types``, in its order.

    Raises
    ------
    ConfigError, ModelError
        A name that is not a non-empty string, an override that is not a mapping, an unknown option, an
        option of :data:`SHARED_OPTIONS`, a value the config refuses or an unknown model (named with the type).
    """
    allowed = sorted({f.name for f in fields(AttributionConfig)} - set(SHARED_OPTIONS) | {"models"})
    out: dict[str, tuple[AttributionConfig, Models]] = {}
    for name, overrides in (conversion_types or {}).items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"conversion_types: keys are conversion names (non-empty strings), got {name!r}")
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"conversion_types[{name!r}] must be a mapping of options, got {overrides!r}")
        shared = sorted(set(overrides) & set(SHARED_OPTIONS))
        if shared:
            raise ConfigError(
                f"conversion_types[{name!r}]: {', '.join(shared)} read the input frames once for every type and "
                "cannot differ per type; pass them to attribute() itself"
            )
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ConfigError(
                f"conversion_types[{name!r}]: unknown option(s) {', '.join(unknown)}; valid: {', '.join(allowed)}"
            )
        options = {k: v for k, v in overrides.items() if k != "models"}
        try:
            cfg = config.with_options(**options)
            type_models = overrides.get("models", models)
            resolve_models(type_models, cfg, default=HEURISTIC_MODELS)  # names checked now, not mid-run
        except (ConfigError, ModelError) as exc:
            raise type(exc)(f"conversion_types[{name!r}]: {exc}") from None
        out[name] = (cfg, type_models)
    return out


def conversion_names(conversions: pl.DataFrame, by: str = "name") -> pl.Series:
    """The type of every conversion: its ``by`` column as strings, null where null, empty or blank.

    Parameters
    ----------
    conversions
        The conversions (a polars frame).
    by
        The column holding the types (default ``"name"``): strings, categoricals or integers.

    Returns
    -------
    polars.Series
        ``conversion_name`` (String), one per conversion; surrounding spaces are kept (only blank names
        become null).

    Raises
    ------
    SchemaError
        ``conversions`` has no such column (:class:`ColumnNotFoundError`, with the closest names), or it
        holds neither strings nor integers.
    """
    if by not in conversions.columns:
        raise ColumnNotFoundError(
            f"conversions have no {by!r} column{did_you_mean(by, conversions.columns)}: by={by!r} attributes each "
            f"conversion type (the {by!r} column) on its own; add it or drop by=. Columns are {conversions.columns}",
            missing=[by],
            columns=conversions.columns,
        )
    col = conversions.get_column(by)
    if not (col.dtype == pl.String or isinstance(col.dtype, (pl.Categorical, pl.Enum)) or col.dtype.is_integer()):
        raise SchemaError(f"conversions column {by!r} must hold strings (the conversion type), got {col.dtype}")
    names = col.cast(pl.String)
    return names.set(names.str.strip_chars() == "", None).rename(TYPE_COLUMN)


def attribute_by_name(
    touchpoints: Any,
    conversions: Any,
    *,
    models: Models,
    config: AttributionConfig,
    conversion_types: Mapping[str, Mapping[str, Any]] | None = None,
    on_stage: Callable[[str], None] | None = None,
    warn_unused: bool = True,
) -> AttributionResult:
    """:func:`optiq_engine.attribute` with ``by="name"``: one attribution per conversion type, one result.

    Parameters
    ----------
    touchpoints, conversions
        Frames of docs/contract.md §1; ``conversions`` must have a ``name`` column.
    models, config
        The models and options of every type without an entry in ``conversion_types``.
    conversion_types
        Per name, options that replace ``config``'s fields (``lookback``, ``half_life``, ``touch_rule``, ...,
        not :data:`SHARED_OPTIONS`) and ``models``.
    on_stage
        Called with each stage's name (``"purchase: weights"``).
    warn_unused
        Log a warning for each name of ``conversion_types`` that no conversion has (off for the slices of
        the users an incremental ``optiq run`` recomputes: they need not have every type).

    Returns
    -------
    AttributionResult
        ``links``, ``credit`` and ``unattributed`` with ``conversion_name`` first (types sorted, the type
        without a name last), the models of all types, ``types`` (each type's own result: its ``fitted``,
        ``lookback_coverage``, ``config``); ``fitted`` and ``lookback_coverage`` are per type only.

    Raises
    ------
    SchemaError
        No ``name`` column.
    ConfigError, ModelError
        A bad option or model, of any type, before any type runs.
    SchemaError, InputError
        The frames' own checks (:func:`optiq_engine.attribute`): missing columns, invalid rows with
        ``on_invalid="raise"``.
    """
    from .stages import stage_timer

    per_type = type_configs(config, models, conversion_types)
    resolve_models(models, config, default=HEURISTIC_MODELS)  # checked before any work
    timings: dict[str, float] = {}
    timed = stage_timer(timings, on_stage)
    with timed("validate"):
        tp_norm, cv_norm = normalize_inputs(touchpoints, conversions, config)
        cv = cv_norm.frame.with_columns(conversion_names(cv_norm.frame))
    with timed("encode"):
        tp, _, _ = encode_channels(tp_norm.frame, config)  # derived once: every type sees the same channels
    identity = None
    if config.identity == "stitched":  # one stitch map of every type's rows (docs/contract.md §1.5)
        from .grouping import group_key_columns
        from .identity import resolve_user_ids

        tp, cv, identity = resolve_user_ids(tp, cv, group_key_columns(tp, cv)[:-1])
    names = sorted(cv.get_column(TYPE_COLUMN).drop_nulls().unique().to_list())
    _warn_confusable_names(names)
    if warn_unused:
        _warn_unused(per_type, names)
    # Validated once: each type's run takes the frames as they are (nothing quarantined there).
    tp_valid, cv_none = Normalized(tp, tp_norm.quarantined.clear()), cv_norm.quarantined.clear()
    types: dict[str | None, AttributionResult] = {}
    run = [*names, None] if cv.get_column(TYPE_COLUMN).null_count() else names
    _refuse_shared_experiments(run, per_type, config, models)
    for name in run:
        cfg, type_models = per_type.get(name, (config, models)) if name is not None else (config, models)
        rows = cv.filter(pl.col(TYPE_COLUMN).is_null() if name is None else pl.col(TYPE_COLUMN) == name)
        types[name] = _run_type(
            tp_valid, Normalized(rows.drop(TYPE_COLUMN), cv_none), name, type_models, cfg, on_stage, timings
        )
    if not types:  # no conversion: an empty run gives the frames' columns
        empty: dict[str | None, AttributionResult] = {
            None: _run_type(tp_valid, Normalized(cv.drop(TYPE_COLUMN), cv_none), None, models, config, None, timings)
        }
        combined = _combine(empty, [], config, tp_norm, cv_norm, timings)
        return replace(combined, links=combined.links.clear(), credit=combined.credit.clear(), types={})
    combined = _combine(types, names, config, tp_norm, cv_norm, timings)
    return combined if identity is None else replace(combined, identity=identity)


def _experiments_of(config: AttributionConfig, models: Models) -> tuple[Any, ...]:
    """The experiments a run with ``config`` and ``models`` calibrates DATA_DRIVEN with (the config's, and
    those of DATA_DRIVEN model objects)."""
    listed = models if isinstance(models, (list, tuple)) else [models]
    return tuple(config.experiments) + tuple(
        e for m in listed if not isinstance(m, str) for e in getattr(m, "experiments", ())
    )


def _refuse_shared_experiments(
    names: list[str | None],
    per_type: dict[str, tuple[AttributionConfig, Models]],
    config: AttributionConfig,
    models: Models,
) -> None:
    """Refuse the run's experiments reaching two or more conversion types: each type's DATA_DRIVEN would be
    calibrated to the whole result (a test of 150 met by 150 in each), twice what was measured."""
    shared = _experiments_of(config, models)
    if len(names) < 2 or not shared:
        return
    hit = [
        n
        for n in names
        if _experiments_of(*per_type.get(n, (config, models)) if n is not None else (config, models)) == shared
    ]
    if len(hit) > 1:
        shown = ", ".join(repr(n) if n is not None else "(no name)" for n in hit)
        raise ConfigError(
            f"by='name' runs the conversion types {shown}, and the run's experiments would calibrate each of them "
            f"to the whole result of each test ({len(hit)} times what it measured): a test measures one type, so "
            "give each type its own, conversion_types={'purchase': {'experiments': [...]}}"
        )


def _run_type(
    touchpoints: Normalized,
    conversions: Normalized,
    name: str | None,
    models: Models,
    config: AttributionConfig,
    on_stage: Callable[[str], None] | None,
    timings: dict[str, float],
) -> AttributionResult:
    """One type's attribution: its conversions against every touchpoint, both validated (stage names
    prefixed with the type, seconds added to ``timings``)."""

    def stage(step: str) -> None:
        if on_stage is not None:
            on_stage(f"{name or '(no name)'}: {step}")

    with _labelled_log(f"conversion type {name or '(no name)'}"):
        result = run_attribution(touchpoints, conversions, models=models, config=config, on_stage=stage)
    for k, v in result.timings.items():
        timings[k] = timings.get(k, 0.0) + v
    return result


@contextmanager
def _labelled_log(label: str) -> Iterator[None]:
    """The run's log lines (a lookback that cuts many journeys, an overflow) start with ``label``: one line
    per type, each saying which."""

    def prefix(record: logging.LogRecord) -> bool:
        record.msg = f"{label}: {record.msg}"
        return True

    logger = logging.getLogger(run_attribution.__module__)
    logger.addFilter(prefix)
    try:
        yield
    finally:
        logger.removeFilter(prefix)


def _warn_confusable_names(names: list[str]) -> None:
    """Warn when conversion names differ only by case or surrounding spaces: they are attributed as different
    types (names are compared exactly), which is rarely meant ("purchase " next to "purchase")."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.strip().casefold(), []).append(name)
    clashes = [g for g in groups.values() if len(g) > 1]
    if clashes:
        warnings.warn(
            f"conversion names {clashes[:3]} differ only by case or surrounding spaces; by='name' attributes "
            'each as its own type, with its own conversion_types settings (docs/attribution.md "Conversion '
            'types"): clean them at the source if they are one type',
            ConfusableIdWarning,
            stacklevel=4,
        )


def _warn_unused(per_type: Mapping[str, Any], names: list[str]) -> None:
    """Log the ``conversion_types`` entries that name no conversion of the run, with the closest names."""
    for name in per_type:
        if name not in names:
            hint = did_you_mean(name, names, cutoff=0.6)
            log.warning("conversion_types[%r] matches no conversion name of this run%s", name, hint)


def _combine(
    types: dict[str | None, AttributionResult],
    names: list[str],
    config: AttributionConfig,
    tp_norm: Normalized,
    cv_norm: Normalized,
    timings: dict[str, float],
) -> AttributionResult:
    """One result of the types' results: their frames stacked, ``conversion_name`` first, the models of
    all types (by name, the first type's object when types differ in a model's parameters)."""
    all_models: dict[str, AttributionModel] = {}
    for result in types.values():
        for m in result.models:
            all_models.setdefault(m.name, m)
    model_dtype = pl.Enum(list(all_models))
    type_dtype = pl.Enum(names)

    def stack(what: str) -> pl.DataFrame:
        parts = []
        for name, result in types.items():
            frame = getattr(result, what)
            if "model" in frame.columns and frame.schema["model"] != pl.String:
                frame = frame.with_columns(pl.col("model").cast(pl.String).cast(model_dtype))
            parts.append(frame.select(pl.lit(name, dtype=type_dtype).alias(TYPE_COLUMN), pl.all()))
        return pl.concat(parts, how="vertical", rechunk=False)

    unattributed = stack("unattributed").sort("occurred_at", "conversion_id", "model", nulls_last=False)
    first = next(iter(types.values()))
    return AttributionResult(
        links=stack("links"),
        credit=stack("credit"),
        unattributed=unattributed,
        models=tuple(all_models.values()),
        config=config,
        n_conversions=sum(r.n_conversions for r in types.values()),
        quarantined={"touchpoints": tp_norm.quarantined, "conversions": cv_norm.quarantined},
        timings=timings,
        identity=first.identity,
        types=types,
    )
