"""Simulators of touchpoints and conversions with a known truth, for testing and scoring attribution models.

Two simulators, each importable on its own (``from optiq_engine.simulate import synthetic, worlds``):

- :mod:`.synthetic` (``oq.synthetic``): the project's own generator. One per-touch hazard model with
  named scenarios, sized for millions of users (generated in batches), with the tracking columns of real
  data (UTM tags, click ids, organizations and sites); the truth is each channel's exact incremental
  conversions. See docs/synthetic.md.
- :mod:`.worlds`: an independent simulator written from the data contract only, without reading the
  models, with many conversion mechanisms (at every touch or at the journey's end; interactions, order,
  decay, thresholds, negative and heterogeneous effects); the truth is each channel's exact summed
  Shapley value. See docs/worlds.md.

The submodules are imported on first access (PEP 562), so importing one simulator does not import the other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["synthetic", "worlds"]

if TYPE_CHECKING:
    from . import synthetic, worlds  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
