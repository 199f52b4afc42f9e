"""The ``optiq`` command line (Typer + Rich).

- :mod:`.commands`: the app, ``optiq --debug``, and the order of its commands and groups;
- one module per command or group: :mod:`.attribute` (``optiq attribute``, either engine), :mod:`.demo`,
  :mod:`.warmup`, :mod:`.run` (the nightly job), :mod:`.db` (``optiq db ...``); the service's commands are
  in :mod:`optiq_engine.service.cli`, the Spark path of ``optiq attribute`` in :mod:`optiq_engine.spark.cli`;
- :mod:`.output`: consoles, progress, tables, one-line errors and exit codes, for all of them.

``app`` and ``main`` are imported on first use, so that importing :mod:`.output`, as
:mod:`optiq_engine.service.cli` and :mod:`optiq_engine.spark.cli` do, does not build the app, which imports
:mod:`optiq_engine.service.cli` itself: no import circle, whichever of them is imported first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .commands import app, main

__all__ = ["app", "main"]

# name -> (submodule, its name); _credit_table and _timings: the names these helpers had in the one-module CLI
_LAZY = {
    "app": ("commands", "app"),
    "main": ("commands", "main"),
    "_credit_table": ("output", "credit_table"),
    "_timings": ("attribute", "stage_timings"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
