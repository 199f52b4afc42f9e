"""Parquet datasets in and out of Spark."""

from __future__ import annotations
