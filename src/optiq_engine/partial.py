"""Moved to :mod:`optiq_engine.paths.partial`; this name stays for code that imports it from here."""

from __future__ import annotations

from .paths.partial import path_tables

__all__ = ["path_tables"]
