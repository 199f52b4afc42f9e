"""The error hierarchy of Optiq Engine.

Every error raised on purpose derives from :class:`OptiqError` and from the matching built-in
exception, so ``except ValueError`` keeps working for callers who do not know this package.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "OptiqError",
    "ConfigError",
    "InputError",
    "SchemaError",
    "ColumnNotFoundError",
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


class ColumnNotFoundError(SchemaError):
    """A frame lacks a column the call needs: each missing column is named with the frame's closest ones.

    Parameters
    ----------
    message
        The error message (:meth:`of` writes one naming each missing column and its closest matches).
    missing
        The columns not found (default none).
    columns
        The frame's columns (default none).

    Attributes
    ----------
    missing
        The columns not found.
    columns
        The frame's columns.
    """

    def __init__(self, message: str, *, missing: Sequence[str] = (), columns: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing, self.columns = list(missing), list(columns)

    @classmethod
    def of(cls, missing: Sequence[str], columns: Sequence[str], *, what: str) -> ColumnNotFoundError:
        """``<what> lack required column(s) 'a' (did you mean 'A'?), ...; columns are [...]``.

        Parameters
        ----------
        missing
            The required columns the frame lacks.
        columns
            The frame's columns: the message lists them and suggests the closest one(s) for each missing
            column (:func:`did_you_mean`).
        what
            The frame's name, plural, as the message's subject (``"touchpoints"``).

        Returns
        -------
        ColumnNotFoundError
            The error (not raised: the caller raises it).
        """
        named = ", ".join(f"{c!r}{did_you_mean(c, columns)}" for c in missing)
        return cls(
            f"{what} lack required column(s) {named}; columns are {list(columns)}", missing=missing, columns=columns
        )


def close_matches(name: str, choices: Iterable[str], *, n: int = 2, cutoff: float = 0.5) -> list[str]:
    """The ``choices`` a user most likely meant by ``name``: one spelled the same but for case, ``_`` and
    ``-`` (``anonId``, ``AnonID``, ``anon-id`` for ``anon_id``), else up to ``n`` close ones (difflib)."""
    choices = [str(c) for c in choices]
    squashed = {c.replace("_", "").replace("-", "").lower(): c for c in choices}
    same = squashed.get(name.replace("_", "").replace("-", "").lower())
    return [same] if same is not None and same != name else difflib.get_close_matches(name, choices, n=n, cutoff=cutoff)


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 2, cutoff: float = 0.5) -> str:
    """`` (did you mean 'a', 'b'?)`` for the :func:`close_matches` of ``name``; ``""`` when none is close."""
    close = close_matches(name, choices, n=n, cutoff=cutoff)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


class InputError(OptiqError, ValueError):
    """Input rows are invalid (null ids, bad timestamps, negative values, duplicates ...).

    Parameters
    ----------
    message
        The error message.
    counts
        Number of invalid rows by reason (default: none); copied into :attr:`counts`.

    Attributes
    ----------
    counts
        Number of invalid rows by reason, e.g. ``{"null anon_id": 3}``.
    """

    def __init__(self, message: str, counts: Mapping[str, int] | None = None) -> None:
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
