"""Partial statistics of one part of the users: the path tables that data-driven fits add up.

A data-driven model is fitted on the path table of every journey of the analysis window
(docs/data_driven.md §1-§2). The table is a sum over journeys, so when the users are split into disjoint
parts (Spark partitions, batches), the tables of the parts, added with :meth:`PathTable.concat`, give the
table of the whole, and a fit on it equals the fit of one run over everything. :func:`path_tables` builds
one part's tables without fitting anything; :func:`optiq_engine.attribute` with ``fitted=`` then credits
each part with the fits made on the sum.
"""

from __future__ import annotations

from ..pipeline import path_tables

__all__ = ["path_tables"]
