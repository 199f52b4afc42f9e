"""Partial statistics of one part of the users: the path tables that data-driven fits add up.

A data-driven model is fitted on the path table of every journey of the analysis window
(docs/data_driven.md §1-§2). The table is a sum over journeys, so when the users are split into disjoint
parts (Spark partitions, batches), the tables of the parts, added with :meth:`PathTable.concat`, give the
table of the whole, and a fit on it equals the fit of one run over everything. :func:`path_tables` builds
one part's tables without fitting anything; :func:`optiq_engine.attribute` with ``fitted=`` then credits
each part with the fits made on the sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..config import AttributionConfig
from ..errors import ModelError
from ..matching import Matched, match_inputs
from ..models import AttributionModel, DataDrivenModel
from ..models.base import resolve_models
from ..stages import stage_timer
from .table import PathTable, build_path_table

__all__ = ["REFERENCE_KEY", "WINDOWS_KEY", "fitted_journeys", "journey_tables", "path_tables"]


#: The keys of a ``fit_on="auto"`` model's other tables in :func:`path_tables`: its first journeys' lookback
#: windows (``"DATA_DRIVEN/windows"``), and its whole first journeys counted over the journeys the windows hold
#: (``"DATA_DRIVEN/reference"``: what the choice of history compares).
WINDOWS_KEY = "{}/windows"
REFERENCE_KEY = "{}/reference"


def journey_tables(
    models: Sequence[DataDrivenModel], m: Matched, cfg: AttributionConfig
) -> dict[str, dict[str, tuple[PathTable, np.ndarray]]]:
    """Per model, per history it may be fitted on (``"journeys"``, ``"windows"``: docs/data_driven.md §1),
    the path table and every conversion's path row in it (-1: no journey, or an empty path), in
    sorted-conversion order. MARKOV and SHAPLEY: ``"windows"`` only, every journey; DATA_DRIVEN: the first
    journeys, whole, windowed or (``fit_on="auto"``) both, and then ``"reference"``: the whole table counted
    over the journeys that the windows hold (the same rows)."""
    built: dict[tuple, dict[str, tuple[PathTable, np.ndarray]]] = {}
    out: dict[str, dict[str, tuple[PathTable, np.ndarray]]] = {}
    for model in models:
        fit_on = getattr(model, "fit_on", None)  # None: the lookback windows of every journey
        histories = ("journeys", "windows") if fit_on == "auto" else (fit_on or "windows",)
        out[model.name] = {}
        for history in histories:
            timed = bool(getattr(model, "timed", False))
            key = (model.transform, model.remove_direct_if_not_all, history, fit_on is not None, timed)
            if key not in built:
                built[key] = _journey_table(model, m, cfg, whole=history == "journeys", first=fit_on is not None)
            out[model.name][history] = built[key][history]
            if fit_on == "auto" and history == "journeys":
                out[model.name]["reference"] = built[key]["reference"]
    return out


def _journey_table(
    model: DataDrivenModel, m: Matched, cfg: AttributionConfig, *, whole: bool, first: bool
) -> dict[str, tuple[PathTable, np.ndarray]]:
    """The path table of one history of :func:`journey_tables` (keyed by it) and every conversion's row in
    it; for the whole history of first journeys, also ``"reference"``. With ``first``, a journey that is not
    fitted on (:func:`fitted_journeys`) keeps its row (to be credited) but adds no conversion and no null."""
    lo, tail_lo, tail_hi = m.fit_ranges(whole=whole)
    converting = m.hi > lo
    starts = np.concatenate([lo[converting], tail_lo])
    ends = np.concatenate([m.hi[converting], tail_hi])
    n_conv = int(converting.sum())
    conv = np.zeros(starts.shape[0], dtype=np.float64)
    conv[:n_conv] = 1.0
    value = np.zeros(starts.shape[0], dtype=np.int64)
    value[:n_conv] = m.cv_value[converting]
    fitted = fitted_journeys(m, converting, in_window=not whole) if first else np.ones(starts.shape[0], bool)
    table, journey_path = build_path_table(
        starts,
        ends,
        m.tp_codes,
        m.channels,
        np.where(fitted, conv, 0.0),
        np.where(fitted, 1.0 - conv, 0.0),
        np.where(fitted, value, 0),
        transform=model.transform,
        remove_direct_if_not_all=model.remove_direct_if_not_all,
        direct_channels=cfg.direct_channels,
        times=m.tp_tss if getattr(model, "timed", False) else None,
    )
    rows = np.full(lo.shape[0], -1, dtype=np.int64)
    rows[converting] = journey_path[:n_conv]
    history = "journeys" if whole else "windows"
    out = {history: (table, rows)}
    if first and whole:  # the same rows, counted over the journeys the windows hold
        held = fitted_journeys(m, converting, in_window=True) & (journey_path >= 0)
        live = journey_path[held]
        conversions = np.bincount(live, weights=conv[held], minlength=table.height).astype(np.float64)
        nulls = np.bincount(live, weights=1.0 - conv[held], minlength=table.height).astype(np.float64)
        out["reference"] = (replace(table, conversions=conversions, nulls=nulls), rows)
    return out


def fitted_journeys(m: Matched, converting: np.ndarray, *, in_window: bool) -> np.ndarray:
    """Which journeys (the converting ones, ``converting``, then the tails) DATA_DRIVEN is fitted on: each
    group's first journey (docs/data_driven.md §1): not a conversion whose group converted before it, nor
    the tail of a group that converted; with ``in_window``, not a conversion with no touchpoint within the
    lookback either."""
    assert m.repeat is not None and m.tail_after_conversion is not None
    first_cv = ~m.repeat & (m.hi > m.lo) if in_window else ~m.repeat
    return np.concatenate([first_cv[converting], ~m.tail_after_conversion])


def path_tables(
    touchpoints: Any,
    conversions: Any,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel,
    config: AttributionConfig | None = None,
    **options: Any,
) -> dict[str, PathTable]:
    """The path table that each data-driven model in ``models`` would be fitted on, without fitting.

    The tables ``attribute()`` fits on (``fitted[name].paths`` is the one of the history its fit read); the tables of disjoint sets of users add up
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
        Per model name, its path table (transformed with its ``transform``); a DATA_DRIVEN with
        ``fit_on="auto"`` (the default) has three: its whole first journeys under its name, their lookback
        windows under ``"DATA_DRIVEN/windows"`` and ``"DATA_DRIVEN/reference"`` (:data:`WINDOWS_KEY`,
        :data:`REFERENCE_KEY`): pass them to its ``fit`` as ``table``, ``windows`` and ``reference``;
        ``fitted[name].paths`` is the one of the history it chose.

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
    m = match_inputs(touchpoints, conversions, cfg, stage_timer({}, None), tails=True)
    out = {}
    for model in chosen:
        variants = journey_tables([model], m, cfg)[model.name]  # type: ignore[list-item]
        keys = {"windows": WINDOWS_KEY, "reference": REFERENCE_KEY} if len(variants) > 1 else {}
        for history, (table, _) in variants.items():
            out[keys.get(history, "{}").format(model.name)] = table
    return out
