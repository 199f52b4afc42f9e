"""Path tables and what is done with them: the data-driven models' inputs, fits and diagnostics.

- :mod:`.table`: :class:`PathTable`, the additive statistics of the journeys' transformed channel paths
  (docs/data_driven.md §1-§2), built from journeys (:func:`build_path_table`) or aggregated paths frames.
- :mod:`.fitting`: :func:`fit_paths`, a data-driven model fitted on aggregated paths (ChannelAttribution's
  input format).
- :mod:`.selection`: held-out scoring of path predictions (Markov order selection, DATA_DRIVEN diagnostics).
- :mod:`.partial`: the path tables of one part of the users, which add up to the whole's (Spark, batches).

Only the table is imported here (the models import it); the submodules are imported on use.
"""

from __future__ import annotations

from .table import TRANSFORMS, PathTable, _split, build_path_table  # noqa: F401 - _split: the tests' tokenizer check

__all__ = ["PathTable", "TRANSFORMS", "build_path_table"]
