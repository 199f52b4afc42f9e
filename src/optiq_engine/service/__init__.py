"""Metrics and alerts over Postgres (reads what the engine wrote; never calls a kernel)."""
