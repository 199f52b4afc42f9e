"""journeys_spark(): build_journeys() over a Spark DataFrame of events, with identical results."""

from __future__ import annotations
