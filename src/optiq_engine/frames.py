"""The data contract (docs/contract.md §1): accept pyarrow, polars or pandas frames; coerce, validate, quarantine."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from .errors import InputError, SchemaError

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
    """A frame coerced to the contract, and the rows set aside (with a ``reason`` column)."""

    frame: pl.DataFrame
    quarantined: pl.DataFrame


def to_polars(frame: Any, *, what: str) -> pl.DataFrame:
    """A polars DataFrame from a polars (lazy) frame, a pyarrow Table / RecordBatch or a pandas frame."""
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
        return pl.from_pandas(frame)
    raise SchemaError(
        f"{what} must be a polars DataFrame/LazyFrame, a pyarrow Table or a pandas DataFrame, "
        f"got {type(frame).__name__}"
    )


def _require(frame: pl.DataFrame, columns: tuple[str, ...], *, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hints = []
        squash = {col.replace("_", "").lower(): col for col in frame.columns}
        for c in missing:
            same = squash.get(c.replace("_", "").lower())  # anonId, AnonID, anon-id ... for anon_id
            close = [same] if same else difflib.get_close_matches(c, frame.columns, n=2, cutoff=0.5)
            hints.append(f"{c!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
        raise SchemaError(f"{what} lack required column(s) {', '.join(hints)}; columns are {frame.columns}")


def _as_string(frame: pl.DataFrame, col: str, *, what: str) -> pl.Expr:
    dtype = frame.schema[col]
    if dtype == pl.String:
        return pl.col(col)
    if dtype.is_integer() or isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype == pl.Null:
        return pl.col(col).cast(pl.String)
    raise SchemaError(f"{what} column {col!r} must hold strings (or integers), got {dtype}")


def _as_timestamp(frame: pl.DataFrame, col: str, *, what: str) -> pl.Expr:
    """Expression coercing ``col`` to UTC microseconds; unparseable values become null (counted)."""
    dtype = frame.schema[col]
    if isinstance(dtype, pl.Datetime):
        e = pl.col(col)
        e = e.dt.replace_time_zone("UTC") if dtype.time_zone is None else e.dt.convert_time_zone("UTC")
        return e.cast(TIMESTAMP)
    if dtype == pl.Date:
        return pl.col(col).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype == pl.String:
        return pl.col(col).str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    raise SchemaError(
        f"{what} column {col!r} must be a timestamp (datetime, date or ISO-8601 string), got {dtype}; "
        "convert epoch numbers first, e.g. pl.from_epoch(col, time_unit='us')"
    )


def _as_micros(frame: pl.DataFrame, col: str, *, what: str) -> pl.Expr:
    dtype = frame.schema[col]
    if dtype.is_integer() or dtype == pl.Null:
        return pl.col(col).cast(pl.Int64).fill_null(0)
    if dtype.is_decimal() or dtype.is_float():
        # Whole numbers only (null is 0); a fractional micro is a unit error worth an error, not a rounding.
        whole = pl.col(col) == pl.col(col).round(0)
        return pl.when(pl.col(col).is_null()).then(0).when(whole).then(pl.col(col).cast(pl.Int64, strict=False))
    raise SchemaError(f"{what} column {col!r} must hold integer micros, got {dtype}")


def _normalize(
    frame: Any,
    *,
    what: str,
    id_col: str,
    required: tuple[str, ...],
    value_col: str | None,
    on_invalid: str,
    enums: dict[str, tuple[str, ...]] | None = None,
) -> Normalized:
    df = to_polars(frame, what=what)
    _require(df, required, what=what)
    enums = enums or {}
    casts = [
        _as_string(df, id_col, what=what).alias(id_col),
        _as_string(df, "anon_id", what=what).alias("anon_id"),
        _as_timestamp(df, "occurred_at", what=what).alias("occurred_at"),
    ]
    casts += [_as_string(df, c, what=what).alias(c) for c in _STRING_COLUMNS if c in df.columns and c != "name"]
    if "name" in df.columns:
        casts.append(_as_string(df, "name", what=what).alias("name"))
    casts += [_as_string(df, c, what=what).alias(c) for c in enums]
    if value_col is not None:
        if value_col in df.columns:
            casts.append(_as_micros(df, value_col, what=what).alias(value_col))
        else:
            casts.append(pl.lit(0, dtype=pl.Int64).alias(value_col))
    out = df.with_columns(casts)

    # One reason per bad row: the first that applies, in this order.
    checks: list[tuple[str, pl.Expr]] = [
        (f"null {id_col}", pl.col(id_col).is_null()),
        ("null anon_id", pl.col("anon_id").is_null()),
        ("null occurred_at", pl.col("_orig_ts").is_null()),
        ("unparseable occurred_at", pl.col("occurred_at").is_null()),
        (
            "occurred_at out of range",
            (pl.col("occurred_at") < MIN_TIMESTAMP) | (pl.col("occurred_at") >= MAX_TIMESTAMP),
        ),
    ]
    # An enum column: a null or a value outside the allowed names.
    unknown = {c: pl.col(c).is_in(list(names)).not_().fill_null(True) for c, names in enums.items()}
    checks += [(f"unknown {c}", cond) for c, cond in unknown.items()]
    if value_col is not None:
        checks.append((f"non-integer {value_col}", pl.col(value_col).is_null()))
        checks.append((f"negative {value_col}", pl.col(value_col) < 0))
    reason = pl.when(checks[0][1]).then(pl.lit(checks[0][0]))
    for name, cond in checks[1:]:
        reason = reason.when(cond).then(pl.lit(name))
    extra = [df.get_column("occurred_at").alias("_orig_ts")]
    null_counts = out.select(pl.col(id_col, "anon_id", "occurred_at").null_count())
    needs_check = sum(null_counts.row(0)) > 0
    if not needs_check:
        bounds = out.select(pl.col("occurred_at").min().alias("lo"), pl.col("occurred_at").max().alias("hi"))
        lo, hi = bounds.row(0)
        needs_check = lo is not None and (lo < MIN_TIMESTAMP or hi >= MAX_TIMESTAMP)
    if unknown and not needs_check:
        needs_check = any(out.select(cond.any() for cond in unknown.values()).row(0))
    if value_col is not None and not needs_check:
        v = out.get_column(value_col)
        needs_check = v.null_count() > 0 or (len(v) > 0 and v.min() < 0)  # type: ignore[operator]
    if not needs_check:
        _check_unique(out, id_col, what=what)
        return Normalized(out, out.clear().with_columns(pl.lit(None, dtype=pl.String).alias("reason")))

    flagged = out.with_columns(extra).with_columns(reason.alias("reason"))
    bad = flagged.filter(pl.col("reason").is_not_null()).drop("_orig_ts")
    good = flagged.filter(pl.col("reason").is_null()).drop("_orig_ts", "reason")
    if bad.height and on_invalid != "quarantine":
        counts = dict(bad.group_by("reason").len().sort("reason").iter_rows())
        examples = bad.head(3).select(id_col, "anon_id", "reason").to_dicts()
        summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
        raise InputError(
            f"{bad.height} invalid {what} row(s) ({summary}); examples: {examples}. "
            "Fix the input or pass on_invalid='quarantine' to set them aside.",
            counts,
        )
    _check_unique(good, id_col, what=what)
    return Normalized(good, bad)


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


def normalize_touchpoints(frame: Any, *, on_invalid: str = "raise") -> Normalized:
    """Touchpoints coerced to docs/contract.md §1 (``touchpoint_id``, ``anon_id``, ``occurred_at`` UTC us, ...)."""
    return _normalize(
        frame,
        what="touchpoints",
        id_col="touchpoint_id",
        required=("touchpoint_id", "anon_id", "occurred_at"),
        value_col=None,
        on_invalid=on_invalid,
    )


def normalize_conversions(frame: Any, *, on_invalid: str = "raise") -> Normalized:
    """Conversions coerced to docs/contract.md §1 (``conversion_id``, ``anon_id``, ``occurred_at``, ``value_micros``)."""
    return _normalize(
        frame,
        what="conversions",
        id_col="conversion_id",
        required=("conversion_id", "anon_id", "occurred_at"),
        value_col="value_micros",
        on_invalid=on_invalid,
    )


def normalize_events(frame: Any, *, on_invalid: str = "raise") -> Normalized:
    """Tracking events coerced to docs/contract.md §1 (``event_id``, ``anon_id``, ``occurred_at`` UTC us, ``type``, ...).

    ``type`` must be one of :data:`EVENT_TYPES` (else the row's reason is ``"unknown type"``);
    ``value_micros`` is Int64, null (or absent) is 0, negative is invalid.
    """
    return _normalize(
        frame,
        what="events",
        id_col="event_id",
        required=("event_id", "anon_id", "occurred_at", "type"),
        value_col="value_micros",
        on_invalid=on_invalid,
        enums={"type": EVENT_TYPES},
    )
