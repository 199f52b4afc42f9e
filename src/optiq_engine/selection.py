"""Moved to :mod:`optiq_engine.paths.selection`; this name stays for code that imports it from here."""

from __future__ import annotations

from .paths.selection import (
    calibration_table,
    compare_conversion_models,
    conversion_predict,
    fold_tables,
    markov_predict,
    scores,
    select_markov_order,
)

__all__ = [
    "calibration_table",
    "compare_conversion_models",
    "conversion_predict",
    "fold_tables",
    "markov_predict",
    "scores",
    "select_markov_order",
]
