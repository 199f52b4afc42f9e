"""The error hierarchy of Optiq Engine.

Every error raised on purpose derives from :class:`OptiqError` and from the matching built-in
exception, so ``except ValueError`` keeps working for callers who do not know this package.
"""

from __future__ import annotations

__all__ = [
    "OptiqError",
    "ConfigError",
    "InputError",
    "SchemaError",
    "ModelError",
    "OptiqWarning",
    "NaiveTimestampWarning",
    "ConfusableIdWarning",
    "SourceError",
    "SinkError",
]


class OptiqError(Exception):
    """Root of all errors raised by Optiq Engine."""


class ConfigError(OptiqError, ValueError):
    """A configuration value or option is invalid (the message names the field and why)."""


class SchemaError(OptiqError, ValueError):
    """A frame lacks a required column or has one of the wrong type."""


class InputError(OptiqError, ValueError):
    """Input rows are invalid (null ids, bad timestamps, negative values, duplicates ...).

    Attributes
    ----------
    counts
        Number of invalid rows by reason, e.g. ``{"null anon_id": 3}``.
    """

    def __init__(self, message: str, counts: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.counts: dict[str, int] = dict(counts or {})


class ModelError(OptiqError, ValueError):
    """An unknown model name or invalid model parameters."""


class OptiqWarning(UserWarning):
    """Root of the warnings of Optiq Engine: the run went on, but something in the input deserves a look."""


class NaiveTimestampWarning(OptiqWarning):
    """Timestamps without a time zone were taken as UTC (pass ``timezone=`` to say which zone they are in)."""


class ConfusableIdWarning(OptiqWarning):
    """Distinct ids differ only by surrounding whitespace or Unicode normalisation (they stay distinct)."""


class SourceError(OptiqError, ValueError):
    """An input file or folder cannot be read: missing, corrupted, of an unknown format, unparseable.

    The message names the path, what went wrong (the first line of the reader's error) and what to do.
    """


class SinkError(OptiqError, OSError):
    """An output path cannot be written: it is a file where a folder is expected, read-only, full.

    Nothing was changed at the output: previous results there stay intact.
    """
