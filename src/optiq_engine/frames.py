"""The data contract (docs/contract.md §1): accept pyarrow, polars or pandas frames; coerce, validate, quarantine."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from .errors import ColumnNotFoundError, ConfusableIdWarning, InputError, OptiqWarning, SchemaError
from .money import cents_to_micros, check_unit_plausible, check_value_options, money_like_columns, to_micros
from .timestamps import to_utc

__all__ = [
    "to_polars",
    "normalize_touchpoints",
    "normalize_conversions",
    "normalize_events",
    "EVENT_TYPES",
    "Normalized",
    "TIMESTAMP",
    "LINKS_SCHEMA",
    "MIN_TIMESTAMP",
    "MAX_TIMESTAMP",
    "invalid_rows_error",
    "warn_confusable_ids",
    "matches_among",
    "value_source",
]

TIMESTAMP = pl.Datetime("us", "UTC")
#: Valid timestamps lie in [MIN_TIMESTAMP, MAX_TIMESTAMP).
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2200, 1, 1, tzinfo=UTC)

#: The ``type`` values of tracking events (docs/contract.md §1).
EVENT_TYPES = ("PAGE_VIEW", "CONVERSION", "CUSTOM")

LINKS_SCHEMA: dict[str, Any] = {
    "conversion_id": pl.String,
    "touchpoint_id": pl.String,
    "model": pl.String,  # an Enum of the run's model names in results
    "weight": pl.Float64,
    "position": pl.Int32,
    "touchpoint_count": pl.Int32,
    "credited_value_micros": pl.Int64,
    "channel": pl.String,  # an Enum of the run's channels in results
}

_STRING_COLUMNS = (
    "organization_id",
    "site_id",
    "session_id",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "gclid",
    "fbclid",
    "ttclid",
    "platform_code",
    "campaign_id",
    "ad_id",
    "name",
)


@dataclass(frozen=True)
class Normalized:
    """A frame coerced to the contract, and the rows set aside (with a ``reason`` column).

    Parameters
    ----------
    frame
        The valid rows, coerced (ids as strings, ``occurred_at`` as ``Datetime("us", "UTC")``, money as
        Int64 micros).
    quarantined
        The invalid rows, coerced the same way, with a ``reason`` (String) column; empty when none.
    """

    frame: pl.DataFrame
    quarantined: pl.DataFrame


def to_polars(frame: Any, *, what: str) -> pl.DataFrame:
    """A polars DataFrame from a polars (lazy) frame, a pyarrow Table / RecordBatch or a pandas frame.

    Parameters
    ----------
    frame
        The input: a polars DataFrame is returned as is, a LazyFrame collected.
    what
        The frame's name, for messages (``"touchpoints"``).

    Returns
    -------
    polars.DataFrame

    Raises
    ------
    SchemaError
        ``frame`` is of another type, or a pandas column cannot be converted (the column is named).
    """
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    try:
        import pyarrow as pa

        if isinstance(frame, (pa.Table, pa.RecordBatch)):
            return pl.from_arrow(frame)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        pass
    if type(frame).__module__.startswith("pandas"):
        return _from_pandas(frame, what=what)
    raise SchemaError(
        f"{what} must be a polars DataFrame/LazyFrame, a pyarrow Table or a pandas DataFrame, "
        f"got {type(frame).__name__}"
    )


def _from_pandas(frame: Any, *, what: str) -> pl.DataFrame:
    """``pl.from_pandas``, with a column that cannot convert named (e.g. an object column holding 2**64)."""
    _refuse_mixed_time_zones(frame, what=what)
    try:
        return pl.from_pandas(frame)
    except Exception as exc:  # polars/pyarrow raise several types; find the column and say which
        for col in frame.columns:
            try:
                pl.from_pandas(frame[[col]])
            except Exception as col_exc:
                raise SchemaError(
                    f"{what} column {col!r} (pandas dtype {frame[col].dtype}) cannot be read: {col_exc}; "
                    "give it one type (ints that fit in int64, strings or timestamps)"
                ) from None
        raise SchemaError(f"{what} cannot be converted from pandas: {exc}") from None


def _warn_missing_amounts(column: pl.Series, *, what: str, unit: str) -> None:
    """Warn when a currency column the caller named has missing amounts (null, or pandas' NaN): each is
    credited 0 as the contract says (docs/contract.md §1.1), but in a revenue column it is more often a
    failed join than a free conversion."""
    missing = column.null_count()
    if unit == "currency" and missing:
        warnings.warn(
            f"{what}: {missing:,} of {column.len():,} {column.name!r} values are missing (null or NaN) and "
            "count as 0; fill them, or drop those conversions, if they have a value (docs/contract.md §1.1)",
            OptiqWarning,
            stacklevel=8,  # the caller of attribute()
        )


def _refuse_mixed_time_zones(frame: Any, *, what: str) -> None:
    """A pandas object column of datetimes with and without a time zone: polars would give them all the first
    value's kind (naive times read as UTC, or zoned ones stripped of their zone), a result that depends on
    row order; refused instead (docs/contract.md §1.2)."""
    for col in frame.columns:
        values = frame[col]
        first = values.first_valid_index() if values.dtype == object else None
        if first is None or not isinstance(values.loc[first], datetime):  # object columns of strings: not scanned
            continue
        kinds = {v.tzinfo is not None and v.utcoffset() is not None for v in values if isinstance(v, datetime)}
        if len(kinds) == 2:
            raise SchemaError(
                f"{what} column {col!r} mixes times with and without a time zone; give them one kind, e.g. "
                "pd.to_datetime(column, utc=True) if the naive ones are UTC (docs/contract.md §1.2)"
            )


def _require(columns: Sequence[str], required: tuple[str, ...], *, what: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise ColumnNotFoundError.of(missing, columns, what=what)


def _as_string(frame: pl.DataFrame, col: str, *, what: str) -> pl.Expr:
    dtype = frame.schema[col]
    if dtype == pl.String:
        return pl.col(col)
    if dtype.is_integer() or isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype == pl.Null:
        return pl.col(col).cast(pl.String)
    raise SchemaError(f"{what} column {col!r} must hold strings (or integers), got {dtype}")


def value_source(
    columns: Sequence[str], value_col: str, value_column: str | None, unit: str, *, what: str
) -> str | None:
    """The column of ``columns`` holding the frame's money (docs/contract.md §1.1), or None (every value 0).

    Parameters
    ----------
    columns
        The frame's columns.
    value_col
        The contract's value column (``"value_micros"``).
    value_column
        The column the caller named (``value_column=``), or None.
    unit
        ``"micros"`` or ``"currency"``.
    what
        The frame's name, for messages.

    Returns
    -------
    str or None
        ``value_column`` if given, else ``value_col`` if present, else None.

    Raises
    ------
    SchemaError
        ``value_column`` is missing or beside ``value_col``; ``unit="currency"`` without a column; a
        money-like column (``revenue``, ``amount``, ...) beside no ``value_col``, which would credit 0.
    """
    if value_column is not None and value_column != value_col:
        if value_column not in columns:
            _require(columns, (value_column,), what=what)
        if value_col in columns:
            raise SchemaError(
                f"{what} have both {value_col!r} and value_column={value_column!r}: keep one (drop or rename the other)"
            )
        return value_column
    if value_col in columns:
        return value_col
    if unit == "currency":
        raise SchemaError(
            f"{what} lack a value column: value_unit='currency' needs value_column='<column in currency units>'"
        )
    looks = money_like_columns(list(columns))
    if looks:
        cents = "cents" in looks[0].lower()  # neither unit: cents x 10,000 are micros
        how = (
            f"it looks like cents: {cents_to_micros(looks[0])}"
            if cents
            else f"pass value_column={looks[0]!r} with value_unit='currency' (amounts like 49.99) or "
            "value_unit='micros' (integer micros)"
        )
        raise SchemaError(
            f"{what} have no {value_col!r} column but {', '.join(map(repr, looks))} looks like money: without it "
            f"every conversion is credited 0. {how[0].upper()}{how[1:]}; or drop/rename the column if it is not "
            "the value"
        )
    return None


@dataclass(frozen=True)
class _Checks:
    """Per-row invalid conditions (True: invalid), in the order of precedence, with their reasons."""

    names: list[str]
    masks: list[pl.Series]

    def add(self, name: str, mask: pl.Series | None) -> None:
        if mask is not None and mask.any():
            self.names.append(name)
            self.masks.append(mask.fill_null(False).rename(name))


#: ASCII characters that ``\s`` matches (the others it matches are not ASCII).
_ASCII_SPACES = (" ", "\t", "\n", "\x0b", "\x0c", "\r")


def _may_start_blank(ids: pl.Expr) -> pl.Expr:
    """True where a string may be empty or start with whitespace: below ``"!"`` in byte order (every ASCII
    space is) or not ASCII (fewer characters than bytes). Two cheap passes instead of a regex per row."""
    return ((ids < "!") | (ids.str.len_chars() != ids.str.len_bytes())).fill_null(False)


def _may_be_padded(ids: pl.Expr) -> pl.Expr:
    r""":func:`_may_start_blank`, or ending with an ASCII space: true wherever ``^\s|\s$|[^\x00-\x7f]`` is."""
    return _may_start_blank(ids) | pl.any_horizontal([ids.str.ends_with(c) for c in _ASCII_SPACES]).fill_null(False)


def matches_among(ids: pl.Series, maybe: pl.Series, pattern: str) -> pl.Series:
    """``ids.str.contains(pattern)`` (null: False) with the regex run only on the rows where ``maybe``.

    Parameters
    ----------
    ids
        Strings.
    maybe
        Boolean, no nulls: True on every row the pattern could match (a cheap superset of the matches).
    pattern
        The regex.

    Returns
    -------
    polars.Series
        Boolean, no nulls, one per row of ``ids``.
    """
    rows = maybe.arg_true()
    hits = pl.repeat(False, ids.len(), eager=True).rename(ids.name)
    if rows.len():
        hits = hits.scatter(rows, ids.gather(rows).str.contains(pattern).fill_null(False))
    return hits


def _id_checks(out: pl.DataFrame, col: str, checks: _Checks, maybe_blank: pl.Series) -> None:
    ids = out.get_column(col)
    checks.add(f"null {col}", ids.is_null())
    checks.add(f"empty {col}", matches_among(ids, maybe_blank, r"^\s*$"))


def _normalize(
    frame: Any,
    *,
    what: str,
    id_col: str,
    required: tuple[str, ...],
    value_col: str | None,
    on_invalid: str,
    enums: dict[str, tuple[str, ...]] | None = None,
    timezone: str | None = None,
    timestamp_format: str | None = None,
    value_column: str | None = None,
    value_unit: str = "micros",
) -> Normalized:
    check_value_options(value_column, value_unit)
    df = to_polars(frame, what=what)
    _require(df.columns, required, what=what)
    enums = enums or {}
    casts: list[pl.Expr | pl.Series] = [
        _as_string(df, id_col, what=what).alias(id_col),
        _as_string(df, "anon_id", what=what).alias("anon_id"),
    ]
    casts += [_as_string(df, c, what=what).alias(c) for c in _STRING_COLUMNS if c in df.columns]
    casts += [_as_string(df, c, what=what).alias(c) for c in enums]
    times = to_utc(df.get_column("occurred_at"), what=what, timezone=timezone, timestamp_format=timestamp_format)
    casts.append(times.utc.alias("occurred_at"))
    money = None
    if value_col is not None:
        source = value_source(df.columns, value_col, value_column, value_unit, what=what)
        if source is None:
            casts.append(pl.lit(0, dtype=pl.Int64).alias(value_col))
        else:
            check_unit_plausible(df.get_column(source), what=what, unit=value_unit)
            money = to_micros(df.get_column(source), what=what, unit=value_unit)  # type: ignore[arg-type]
            casts.append(money.micros.alias(value_col))
            _warn_missing_amounts(df.get_column(source), what=what, unit=value_unit)
            if source != value_col:
                df = df.drop(source)
    out = df.with_columns(casts)

    # One reason per bad row: the first that applies, in this order.
    checks = _Checks([], [])
    maybe_blank = out.select(_may_start_blank(pl.col(c)) for c in (id_col, "anon_id"))  # in parallel
    _id_checks(out, id_col, checks, maybe_blank.get_column(id_col))
    _id_checks(out, "anon_id", checks, maybe_blank.get_column("anon_id"))
    ts = out.get_column("occurred_at")
    checks.add("null occurred_at", df.get_column("occurred_at").is_null())
    checks.add("unparseable occurred_at", times.unreadable)
    checks.add("nonexistent or ambiguous local occurred_at", times.local_gap)
    checks.add("occurred_at out of range", (ts < MIN_TIMESTAMP) | (ts >= MAX_TIMESTAMP))
    for c, names in enums.items():
        checks.add(f"unknown {c}", ~out.get_column(c).is_in(list(names)).fill_null(False))
    if value_col is not None:
        if money is not None and money.reason is not None:
            for name in money.reason.drop_nulls().unique().sort().to_list():
                checks.add(name, money.reason == name)
        checks.add(f"negative {value_col}", out.get_column(value_col) < 0)
    if not checks.names:
        _check_unique(out, id_col, what=what)
        return Normalized(out, out.clear().with_columns(pl.lit(None, dtype=pl.String).alias("reason")))

    reason: Any = pl.when(pl.col(checks.names[0])).then(pl.lit(checks.names[0]))  # Then, then ChainedThen
    for name in checks.names[1:]:
        reason = reason.when(pl.col(name)).then(pl.lit(name))
    flagged = out.with_columns(pl.DataFrame(checks.masks).select(reason.alias("reason")).to_series())
    bad = flagged.filter(pl.col("reason").is_not_null())
    good = flagged.filter(pl.col("reason").is_null()).drop("reason")
    if bad.height and on_invalid != "quarantine":
        raise invalid_rows_error(what, bad, id_col)
    _check_unique(good, id_col, what=what)
    return Normalized(good, bad)


def invalid_rows_error(what: str, bad: pl.DataFrame, id_col: str) -> InputError:
    """The :class:`InputError` for ``bad`` rows (with a ``reason`` column): counts by reason and examples.

    Parameters
    ----------
    what
        The frame's name, plural (``"touchpoints"``).
    bad
        The invalid rows, with ``id_col``, ``anon_id`` and ``reason``.
    id_col
        The frame's id column (``"touchpoint_id"``).

    Returns
    -------
    InputError
        Not raised: the caller raises it. Its ``counts`` are the rows per reason; the message shows three
        examples and how to quarantine instead.
    """
    counts = dict(bad.group_by("reason").len().sort("reason").iter_rows())
    examples = bad.head(3).select(id_col, "anon_id", "reason").to_dicts()
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
    hint = ""
    if "unparseable occurred_at" in counts:
        hint = (
            " occurred_at must be ISO 8601 (2024-01-09T09:00:00Z); for another spelling pass "
            "timestamp_format='%m/%d/%Y %H:%M'."
        )
    return InputError(
        f"{bad.height} invalid {what} row(s) ({summary}); examples: {examples}.{hint} "
        "Fix the input (docs/contract.md §1) or pass on_invalid='quarantine' (CLI: --quarantine) to set them aside.",
        counts,
    )


def _check_unique(frame: pl.DataFrame, id_col: str, *, what: str) -> None:
    ids = frame.get_column(id_col)
    if ids.len() and ids.hash().n_unique() == ids.len():
        return  # distinct hashes imply distinct ids
    dup = frame.filter(pl.col(id_col).is_duplicated())
    if dup.height:
        examples = dup.get_column(id_col).unique().head(3).to_list()
        raise InputError(
            f"{dup.height} {what} row(s) share an {id_col} with another row (e.g. {examples}); ids must be unique",
            {f"duplicate {id_col}": dup.height},
        )


def normalize_touchpoints(
    frame: Any, *, on_invalid: str = "raise", timezone: str | None = None, timestamp_format: str | None = None
) -> Normalized:
    """Touchpoints coerced to docs/contract.md §1 (``touchpoint_id``, ``anon_id``, ``occurred_at`` UTC us, ...).

    Parameters
    ----------
    frame
        polars, pyarrow or pandas frame.
    on_invalid
        ``"raise"`` an :class:`InputError` on invalid rows, or ``"quarantine"`` them (with a ``reason``).
    timezone, timestamp_format
        How ``occurred_at`` strings and naive times are read (docs/contract.md §1.2).

    Returns
    -------
    Normalized
        The valid rows, and the quarantined ones.

    Raises
    ------
    SchemaError
        A required column is missing or has a type that cannot hold it.
    InputError
        Invalid rows (unless quarantined) or duplicate ``touchpoint_id`` values.
    ConfigError
        ``timezone`` is not an IANA zone name, or ``timestamp_format`` has no ``%`` directive.
    """
    return _normalize(
        frame,
        what="touchpoints",
        id_col="touchpoint_id",
        required=("touchpoint_id", "anon_id", "occurred_at"),
        value_col=None,
        on_invalid=on_invalid,
        timezone=timezone,
        timestamp_format=timestamp_format,
    )


def normalize_conversions(
    frame: Any,
    *,
    on_invalid: str = "raise",
    timezone: str | None = None,
    timestamp_format: str | None = None,
    value_column: str | None = None,
    value_unit: str = "micros",
) -> Normalized:
    """Conversions coerced to docs/contract.md §1 (``conversion_id``, ``anon_id``, ``occurred_at``, ``value_micros``).

    Parameters
    ----------
    frame
        polars, pyarrow or pandas frame.
    on_invalid
        ``"raise"`` or ``"quarantine"`` invalid rows.
    timezone, timestamp_format
        How ``occurred_at`` strings and naive times are read (docs/contract.md §1.2).
    value_column, value_unit
        The money column (default ``value_micros``) and its unit, ``"micros"`` (integers) or
        ``"currency"`` (converted exactly; docs/contract.md §1.1). The result's column is ``value_micros``.

    Returns
    -------
    Normalized

    Raises
    ------
    SchemaError
        Missing columns; a float or string ``value_micros``; a money-like column beside no value column.
    InputError
        Invalid rows (unless quarantined) or duplicate ``conversion_id`` values.
    ConfigError
        A bad ``value_column`` / ``value_unit``, ``timezone`` or ``timestamp_format``.
    """
    return _normalize(
        frame,
        what="conversions",
        id_col="conversion_id",
        required=("conversion_id", "anon_id", "occurred_at"),
        value_col="value_micros",
        on_invalid=on_invalid,
        timezone=timezone,
        timestamp_format=timestamp_format,
        value_column=value_column,
        value_unit=value_unit,
    )


def normalize_events(
    frame: Any,
    *,
    on_invalid: str = "raise",
    timezone: str | None = None,
    timestamp_format: str | None = None,
    value_column: str | None = None,
    value_unit: str = "micros",
) -> Normalized:
    """Tracking events coerced to docs/contract.md §1 (``event_id``, ``anon_id``, ``occurred_at`` UTC us, ``type``, ...).

    ``type`` must be one of :data:`EVENT_TYPES` (else the row's reason is ``"unknown type"``);
    ``value_micros`` is Int64, null (or absent) is 0, negative is invalid; the other options are those of
    :func:`normalize_conversions`.

    Parameters
    ----------
    frame
        polars, pyarrow or pandas frame with ``event_id``, ``anon_id``, ``occurred_at`` and ``type``.
    on_invalid
        ``"raise"`` (default) or ``"quarantine"`` invalid rows.
    timezone, timestamp_format
        How ``occurred_at`` strings and naive times are read (docs/contract.md §1.2).
    value_column, value_unit
        As :func:`normalize_conversions`.

    Returns
    -------
    Normalized

    Raises
    ------
    SchemaError
        Missing columns or columns of the wrong type (as :func:`normalize_conversions`).
    InputError
        Invalid rows (unless quarantined) or duplicate ``event_id`` values.
    ConfigError
        A bad ``value_column`` / ``value_unit``, ``timezone`` or ``timestamp_format``.
    """
    return _normalize(
        frame,
        what="events",
        id_col="event_id",
        required=("event_id", "anon_id", "occurred_at", "type"),
        value_col="value_micros",
        on_invalid=on_invalid,
        enums={"type": EVENT_TYPES},
        timezone=timezone,
        timestamp_format=timestamp_format,
        value_column=value_column,
        value_unit=value_unit,
    )


#: Zero-width characters and the byte-order mark: invisible in a printed id or channel (a regex class).
INVISIBLE_CHARACTERS = "[\u200b-\u200d\u2060\ufeff]"


def _id_key(ids: Any) -> Any:
    """What :func:`warn_confusable_ids` compares: an id (Series or expression) without invisible characters
    and surrounding spaces, NFC-normalised."""
    return ids.str.replace_all(INVISIBLE_CHARACTERS, "").str.strip_chars().str.normalize("NFC")


def warn_confusable_ids(*columns: pl.Series, what: str = "anon_id") -> int:
    """Warn when distinct ids differ only by surrounding whitespace, invisible characters (zero-width spaces, a
    byte-order mark) or Unicode normalisation (NFC).

    Ids stay as given (docs/contract.md §1.3: they are keys into the caller's tables); this only makes a
    likely split of one visitor into two visible. Only ids with surrounding whitespace or non-ASCII
    characters are candidates, so the usual ASCII ids cost one regex pass.

    Parameters
    ----------
    *columns
        Id series (cast to strings; nulls ignored), compared together: an id of one may collide with an id
        of another.
    what
        The ids' name in the warning (default ``"anon_id"``).

    Returns
    -------
    int
        Number of distinct ids that collide with another after trimming and NFC normalisation.
    """
    ids = pl.concat([c.rename("id").cast(pl.String) for c in columns]).drop_nulls()
    maybe = ids.to_frame().select(_may_be_padded(pl.col("id"))).to_series()
    odd = ids.filter(matches_among(ids, maybe, r"^\s|\s$|[^\x00-\x7F]")).unique()
    if odd.is_empty():
        return 0
    plain = ids.filter(ids.is_in(_id_key(odd).implode())).unique()
    cleaned = pl.concat([odd, plain]).unique().to_frame()
    cleaned = cleaned.with_columns(key=_id_key(pl.col("id")))
    clashes = cleaned.filter(pl.col("key").is_duplicated()).sort("key", "id")
    if clashes.is_empty():
        return 0
    examples = clashes.group_by("key", maintain_order=True).agg("id").head(3).get_column("id").to_list()
    warnings.warn(
        f"{clashes.height:,} distinct {what} values differ from another only by surrounding spaces, invisible characters or Unicode "
        f"normalisation (e.g. {examples}); they are treated as different visitors (docs/contract.md §1.3): "
        "clean them at the source if they are one person",
        ConfusableIdWarning,
        stacklevel=3,
    )
    return clashes.height
