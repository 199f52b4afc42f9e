"""Optiq Engine: marketing attribution on columnar data, with a Numba core.

>>> import optiq_engine as oq
>>> result = oq.attribute(touchpoints, conversions, models=["LINEAR"])  # doctest: +SKIP

The public names are imported on first use (PEP 562), so ``import optiq_engine`` and ``optiq --help``
do not pay for Polars, Numba or SciPy.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first access. A new public name is one line
# here (plus its import under TYPE_CHECKING below, for type checkers and editors).
_LAZY: dict[str, str] = {
    "attribute": ".attribution",
    "fit_paths": ".paths.fitting",
    "select_markov_order": ".paths.selection",
    "compare_conversion_models": ".paths.selection",
    "PathTable": ".paths",
    "build_journeys": ".journeys",
    "JourneyResult": ".journeys",
    "extract_touchpoints": ".touchpoints",
    "TouchpointExtraction": ".touchpoints",
    "AttributionConfig": ".config",
    "AttributionResult": ".result",
    "combine_credit": ".result",
    "IdentityStitch": ".identity",
    "Experiment": ".experiments",
    "ChannelRule": ".channels",
    "ChannelRules": ".channels",
    "DEFAULT_CHANNEL_RULES": ".channels",
    "derive_channels": ".channels",
    "available_models": ".models",
    "get_model": ".models",
    "OptiqError": ".errors",
    "ConfigError": ".errors",
    "InputError": ".errors",
    "ModelError": ".errors",
    "SchemaError": ".errors",
    "ColumnNotFoundError": ".errors",
}
# Public submodules: name -> module path (the attribute is the module itself).
_SUBMODULES: dict[str, str] = {
    "models": ".models",
    "synthetic": ".simulate.synthetic",
}

__all__ = [*_LAZY, *_SUBMODULES, "__version__"]

if TYPE_CHECKING:  # the names' types for type checkers and editors
    from . import models  # noqa: F401
    from .attribution import attribute  # noqa: F401
    from .channels import DEFAULT_CHANNEL_RULES, ChannelRule, ChannelRules, derive_channels  # noqa: F401
    from .config import AttributionConfig  # noqa: F401
    from .errors import ColumnNotFoundError, ConfigError, InputError, ModelError, OptiqError, SchemaError  # noqa: F401
    from .experiments import Experiment  # noqa: F401
    from .identity import IdentityStitch  # noqa: F401
    from .journeys import JourneyResult, build_journeys  # noqa: F401
    from .models import available_models, get_model  # noqa: F401
    from .paths import PathTable  # noqa: F401
    from .paths.fitting import fit_paths  # noqa: F401
    from .paths.selection import compare_conversion_models, select_markov_order  # noqa: F401
    from .result import AttributionResult, combine_credit  # noqa: F401
    from .simulate import synthetic  # noqa: F401
    from .touchpoints import TouchpointExtraction, extract_touchpoints  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name in this module.

    Any other submodule (``optiq_engine.errors``, ``optiq_engine.frames``) is imported on access too, as
    it was when this module imported everything eagerly.
    """
    if name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name], __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
