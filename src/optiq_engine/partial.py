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

from .config import AttributionConfig
from .errors import ModelError
from .frames import normalize_conversions, normalize_touchpoints
from .grouping import group_key_columns, micros, order_ties_by_id, readonly
from .kernels.paths import tail_ranges
from .kernels.sort import bucket_bits, sort_by_group_time
from .kernels.windows import match_windows
from .models import AttributionModel, DataDrivenModel
from .models.base import resolve_models
from .paths import PathTable, build_path_table

__all__ = ["path_tables"]


def path_tables(
    touchpoints: Any,
    conversions: Any,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel,
    config: AttributionConfig | None = None,
    **options: Any,
) -> dict[str, PathTable]:
    """The path table that each data-driven model in ``models`` would be fitted on, for these users.

    Parameters
    ----------
    touchpoints, conversions
        Frames in the contract of SPEC §1; every user (group) must be whole in them.
    models
        Data-driven models (names or objects); heuristic models are refused.
    config
        An :class:`AttributionConfig`; ``options`` override its fields.

    Returns
    -------
    dict[str, PathTable]
        Per model name, the distinct transformed paths with their conversions, nulls and value: the same
        table ``attribute()`` fits on (``attribute(...).fitted[name].paths``), without fitting.

    Raises
    ------
    ModelError
        A model that is not data-driven.
    SchemaError, InputError
        As :func:`optiq_engine.attribute`.

    Examples
    --------
    >>> import optiq_engine as oq
    >>> from optiq_engine.partial import path_tables
    >>> data = oq.synthetic.generate(n_users=500, seed=1)
    >>> parts = [path_tables(tp, cv, models=["MARKOV"])["MARKOV"] for tp, cv in [(data.touchpoints, data.conversions)]]
    >>> fit = oq.models.Markov().fit(oq.PathTable.concat(parts))
    """
    cfg = (config or AttributionConfig()).with_options(**options)
    chosen = resolve_models(models, cfg, default=())
    bad = [m.name for m in chosen if not isinstance(m, DataDrivenModel)]
    if bad:
        raise ModelError(f"path_tables() takes data-driven models only, got {bad}")
    from .pipeline import _encode_channels, _group_hashes

    tp = normalize_touchpoints(touchpoints, on_invalid=cfg.on_invalid).frame
    cv = normalize_conversions(conversions, on_invalid=cfg.on_invalid).frame
    keys = group_key_columns(tp, cv)
    tp, channels, tp_code = _encode_channels(tp, cfg)
    tp_ts = tp.get_column("occurred_at").to_physical().to_numpy()
    cv_ts = cv.get_column("occurred_at").to_physical().to_numpy()
    bits = bucket_bits(max(tp.height, cv.height), rows_per_bucket=4096, max_bits=12)
    lookback = micros(cfg.lookback)
    for exact in (False, True):  # the same sort, match and collision fallback as attribute()
        tp_h, tp_h2, cv_h, cv_h2 = _group_hashes(tp, cv, keys, exact=exact)
        tp_order, tp_hs, tp_tss, tp_h2s, tp_codes, tp_buckets, tp_coll, tp_ties = sort_by_group_time(
            *readonly(tp_h, tp_ts, tp_h2, tp_code), bits
        )
        cv_order, cv_hs, cv_tss, cv_h2s, _, cv_buckets, cv_coll, cv_ties = sort_by_group_time(
            *readonly(cv_h, cv_ts, cv_h2, np.zeros(cv.height, dtype=np.int32)), bits
        )
        lo, hi, _, cross_coll = match_windows(
            tp_hs, tp_tss, tp_h2s, tp_buckets, cv_hs, cv_tss, cv_h2s, cv_buckets, lookback, cfg.reset_after_conversion
        )
        if tp_coll + cv_coll + cross_coll == 0:
            break
    tail_lo, tail_hi = tail_ranges(tp_hs, tp_tss, tp_buckets, cv_hs, cv_tss, cv_buckets, lookback)
    if tp_ties:
        tp_order, tp_codes = order_ties_by_id(tp_order, tp_codes, tp_hs, tp_tss, tp.get_column("touchpoint_id"))
    if cv_ties:  # windows depend on times only: reordering tied conversions keeps lo, hi valid
        cv_order, _ = order_ties_by_id(cv_order, None, cv_hs, cv_tss, cv.get_column("conversion_id"))
    cv_value = cv.get_column("value_micros").to_numpy()[cv_order]
    converting = hi > lo
    starts = np.concatenate([lo[converting], tail_lo])
    ends = np.concatenate([hi[converting], tail_hi])
    n_conv = int(converting.sum())
    conv = np.zeros(starts.shape[0], dtype=np.float64)
    conv[:n_conv] = 1.0
    value = np.zeros(starts.shape[0], dtype=np.int64)
    value[:n_conv] = cv_value[converting]
    out: dict[str, PathTable] = {}
    built: dict[tuple[str, bool], PathTable] = {}
    for model in chosen:
        assert isinstance(model, DataDrivenModel)
        key = (model.transform, model.remove_direct_if_not_all)
        if key not in built:
            built[key] = build_path_table(
                starts, ends, tp_codes, channels, conv, 1.0 - conv, value,
                transform=model.transform, remove_direct_if_not_all=model.remove_direct_if_not_all,
                direct_channels=cfg.direct_channels,
            )[0]  # fmt: skip
        out[model.name] = built[key]
    return out
