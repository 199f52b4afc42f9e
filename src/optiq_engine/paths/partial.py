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
from typing import Any

import numpy as np

from ..config import AttributionConfig
from ..errors import ModelError
from ..matching import Matched, match_inputs
from ..models import AttributionModel, DataDrivenModel
from ..models.base import resolve_models
from ..stages import stage_timer
from .table import PathTable, build_path_table

__all__ = ["journey_tables", "path_tables"]


def journey_tables(
    models: Sequence[DataDrivenModel], m: Matched, cfg: AttributionConfig
) -> dict[str, tuple[PathTable, np.ndarray]]:
    """Per model, the path table of the journeys it is fitted on (docs/data_driven.md §1: the lookback
    windows, or the whole journeys for a model with ``fit_on="journeys"``) and every conversion's path row
    (-1: no journey, or an empty path), in sorted-conversion order."""
    built: dict[tuple[str, bool, bool], tuple[PathTable, np.ndarray]] = {}
    out = {}
    for model in models:
        whole = getattr(model, "fit_on", "windows") == "journeys"
        key = (model.transform, model.remove_direct_if_not_all, whole)
        if key not in built:
            built[key] = _journey_table(model, m, cfg, whole=whole)
        out[model.name] = built[key]
    return out


def _journey_table(
    model: DataDrivenModel, m: Matched, cfg: AttributionConfig, *, whole: bool
) -> tuple[PathTable, np.ndarray]:
    """One path table of :func:`journey_tables` and every conversion's row in it."""
    lo, tail_lo, tail_hi = m.fit_ranges(whole=whole)
    converting = m.hi > lo
    starts = np.concatenate([lo[converting], tail_lo])
    ends = np.concatenate([m.hi[converting], tail_hi])
    n_conv = int(converting.sum())
    conv = np.zeros(starts.shape[0], dtype=np.float64)
    conv[:n_conv] = 1.0
    value = np.zeros(starts.shape[0], dtype=np.int64)
    value[:n_conv] = m.cv_value[converting]
    table, journey_path = build_path_table(
        starts,
        ends,
        m.tp_codes,
        m.channels,
        conv,
        1.0 - conv,
        value,
        transform=model.transform,
        remove_direct_if_not_all=model.remove_direct_if_not_all,
        direct_channels=cfg.direct_channels,
    )
    rows = np.full(lo.shape[0], -1, dtype=np.int64)
    rows[converting] = journey_path[:n_conv]
    return table, rows


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
    m = match_inputs(touchpoints, conversions, cfg, stage_timer({}, None), tails=True)
    return {name: table for name, (table, _) in journey_tables(chosen, m, cfg).items()}  # type: ignore[arg-type]
