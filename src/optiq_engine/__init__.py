"""Optiq Engine: marketing attribution on columnar data, with a Numba core.

>>> import optiq_engine as oq
>>> result = oq.attribute(touchpoints, conversions, models=["LINEAR"])  # doctest: +SKIP
"""

from __future__ import annotations

from . import models
from .channels import DEFAULT_CHANNEL_RULES, ChannelRule, ChannelRules, derive_channels
from .config import AttributionConfig
from .errors import ConfigError, InputError, ModelError, OptiqError, SchemaError
from .fitting import fit_paths
from .io import synthetic
from .journeys import JourneyResult, build_journeys
from .models import available_models, get_model
from .paths import PathTable
from .pipeline import attribute
from .result import AttributionResult, combine_credit
from .selection import compare_conversion_models, select_markov_order
from .touchpoints import TouchpointExtraction, extract_touchpoints

__version__ = "0.1.0"

__all__ = [
    "attribute",
    "fit_paths",
    "select_markov_order",
    "compare_conversion_models",
    "PathTable",
    "build_journeys",
    "JourneyResult",
    "extract_touchpoints",
    "TouchpointExtraction",
    "AttributionConfig",
    "AttributionResult",
    "combine_credit",
    "ChannelRule",
    "ChannelRules",
    "DEFAULT_CHANNEL_RULES",
    "derive_channels",
    "models",
    "available_models",
    "get_model",
    "synthetic",
    "OptiqError",
    "ConfigError",
    "InputError",
    "ModelError",
    "SchemaError",
    "__version__",
]
