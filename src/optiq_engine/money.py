"""Input money as integer micros (docs/contract.md §1.1).

``value_micros`` must be an integer column: a float is refused (``3022.0`` could be micros or dollars, a
factor of a million apart). Currency units are read only when the caller says so
(``value_unit="currency"``), exactly, through each value's decimal spelling, never a binary float sum.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import polars as pl

from .errors import ConfigError, SchemaError

__all__ = [
    "ValueUnit",
    "VALUE_UNITS",
    "MicrosColumn",
    "to_micros",
    "money_like_columns",
    "check_value_options",
    "check_unit_plausible",
    "cents_to_micros",
]

ValueUnit = Literal["micros", "currency"]
VALUE_UNITS: tuple[str, ...] = ("micros", "currency")
MICROS_PER_UNIT = 1_000_000
_INT64_MAX = 2**63 - 1
_CENTS = re.compile(r"cents(?!\w*micros)", re.IGNORECASE)  # amount_cents, revenueCents; not "percent"
#: Integer micros whose typical (median) non-zero conversion value is below this (one cent) read as currency
#: units, a factor of a million off (:func:`check_unit_plausible`).
_IMPLAUSIBLE_MICROS = 10_000
_MONEY_WORDS = re.compile(
    r"revenue|value|amount|price|sales|gmv|income|turnover|payout|earning|money|cents|dollar|euro"
    r"|(^|_)(usd|eur|gbp|aov|ltv)(_|$)"
    # order_total, grand_total, subtotal, cartTotal; not a count (total_items, total_clicks, ...)
    r"|total(?!_?(item|count|qty|quantit|unit|touch|conversion|null|visit|session|click|view|event|page))"
    r"|umsatz|betrag|preis|montant|prix|valor|importe|prezzo",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MicrosColumn:
    """A value column read as micros: ``micros`` (Int64, 0 where the input is null) and ``reason`` (String:
    why a row's value is invalid, null where it is fine).

    Parameters
    ----------
    micros
        Int64 micros (1 currency unit = 1,000,000 micros), one per input row; 0 where the input is null
        or the row's value is invalid.
    reason
        String, one per input row: why the row's value is invalid, null where it is fine; ``None`` (no
        series) when every row is fine.
    """

    micros: pl.Series
    reason: pl.Series | None


def check_value_options(value_column: str | None, value_unit: str) -> None:
    """Raise :class:`ConfigError` for a bad ``value_column`` / ``value_unit``.

    Parameters
    ----------
    value_column
        The column holding the conversions' values: a non-empty name, or None (the contract's
        ``value_micros``).
    value_unit
        ``"micros"`` or ``"currency"`` (:data:`VALUE_UNITS`).

    Raises
    ------
    ConfigError
        ``value_unit`` is not one of :data:`VALUE_UNITS`, or ``value_column`` is not a non-empty string.
    """
    if value_unit not in VALUE_UNITS:
        raise ConfigError(f"value_unit must be 'micros' or 'currency', got {value_unit!r}")
    if value_column is not None and (not isinstance(value_column, str) or not value_column):
        raise ConfigError(f"value_column must be a column name, got {value_column!r}")


def money_like_columns(columns: list[str], *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Columns whose names look like money (``revenue``, ``order_value``, ``Amount``, ...).

    Parameters
    ----------
    columns
        Column names to look through.
    exclude
        Names never returned (e.g. the value column already chosen). Names ending in ``_id`` never are.

    Returns
    -------
    list of str
        The matching names, in the order of ``columns`` (case-insensitive match of money words:
        revenue, value, amount, price, sales, gmv, income, turnover, payout, earnings, money, cents,
        dollars, euros, usd, eur, gbp, aov, ltv, a total that is not a count (``order_total``,
        ``subtotal``; not ``total_items``), and umsatz, betrag, preis, montant, prix, valor, importe, prezzo).
    """
    return [c for c in columns if c not in exclude and not c.endswith("_id") and _MONEY_WORDS.search(c)]


def to_micros(column: pl.Series, *, what: str, unit: ValueUnit) -> MicrosColumn:
    """Read ``column`` as integer micros (``unit="micros"``) or as currency units converted exactly.

    Parameters
    ----------
    column
        The input column (its name is used in messages).
    what
        The frame's name, for messages (``"conversions"``).
    unit
        ``"micros"``: integers (or decimals without a fraction); ``"currency"``: integers, decimals,
        floats or decimal strings in currency units, times 1,000,000.

    Returns
    -------
    MicrosColumn

    Raises
    ------
    SchemaError
        A float, string or other non-integer column with ``unit="micros"``; a type that holds no numbers.
    """
    dtype, name = column.dtype, column.name
    if dtype == pl.Null:
        return MicrosColumn(pl.repeat(0, column.len(), dtype=pl.Int64, eager=True).rename(name), None)
    if unit == "micros":
        if dtype.is_integer():
            return _from_integers(column, 1)
        if dtype.is_decimal():
            return _exact(column, 1, label="non-integer")
        raise SchemaError(_micros_hint(column, what))
    if dtype.is_integer():
        return _from_integers(column, MICROS_PER_UNIT)
    if dtype.is_decimal() or dtype.is_float() or dtype == pl.String:
        return _exact(column, MICROS_PER_UNIT, label="more than 6 decimal places in")
    raise SchemaError(
        f"{what} column {name!r} must hold amounts in currency units (numbers or decimal strings), got {dtype}"
    )


def _micros_hint(column: pl.Series, what: str) -> str:
    name = column.name
    example = ""
    if column.dtype.is_float():
        sample = column.drop_nulls().head(1).to_list()
        if sample and math.isfinite(sample[0]):
            x = sample[0]
            example = f" (e.g. {x!r}: as micros that is {x / MICROS_PER_UNIT:g} currency units; as currency units, {_fmt_micros(x)} micros)"
    return (
        f"{what} column {name!r} is {column.dtype}, but money is integer micros (1 currency unit = 1,000,000 "
        f"micros: 49.99 is 49_990_000){example}. If it holds micros, cast it: pl.col({name!r}).cast(pl.Int64) "
        f"or pandas .astype('Int64'); if it holds currency units, pass value_unit='currency' "
        f"(and value_column={name!r}) to convert exactly"
    )


def _fmt_micros(x: float) -> str:
    try:
        return f"{int(Decimal(repr(x)) * MICROS_PER_UNIT):_}"
    except (InvalidOperation, ValueError, OverflowError):
        return "?"


def _from_integers(column: pl.Series, factor: int) -> MicrosColumn:
    wide = column.to_frame().select(pl.first().cast(pl.Int128) * pl.lit(factor, dtype=pl.Int128)).to_series()
    fits = wide.is_between(-(2**63), _INT64_MAX) | wide.is_null()
    micros = wide.cast(pl.Int64, strict=False).fill_null(0).rename(column.name)
    if fits.all():
        return MicrosColumn(micros, None)
    reason = pl.when(fits).then(None).otherwise(pl.lit(f"{column.name} out of range"))
    return MicrosColumn(micros, fits.to_frame().select(reason).to_series())


def _exact(column: pl.Series, factor: int, *, label: str) -> MicrosColumn:
    """Values x ``factor`` through ``decimal.Decimal`` (each distinct value once): exact or flagged."""
    name = column.name
    distinct = column.drop_nulls().unique()
    values: dict[Any, int] = {}
    reasons: dict[Any, str] = {}
    for v in distinct.to_list():
        micros, why = _one(v, factor)
        if why is None:
            values[v] = micros
        else:
            reasons[v] = _REASONS[why].format(name=name, label=label)
    micros_s = column.replace_strict(values, default=0, return_dtype=pl.Int64).rename(name) if values else None
    if micros_s is None:
        micros_s = pl.repeat(0, column.len(), dtype=pl.Int64, eager=True).rename(name)
    reason = column.replace_strict(reasons, default=None, return_dtype=pl.String) if reasons else None
    if reason is not None:
        micros_s = micros_s.zip_with(reason.is_null(), pl.repeat(0, column.len(), dtype=pl.Int64, eager=True))
    return MicrosColumn(micros_s, reason)


_REASONS = {
    "fraction": "{label} {name}",
    "unreadable": "unreadable {name}",
    "non-finite": "non-finite {name}",
    "range": "{name} out of range",
}


def _one(value: Any, factor: int) -> tuple[int, str | None]:
    """``value`` x ``factor`` as an int, or the reason it cannot be one."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0, "non-finite"
        text = repr(value)  # the shortest spelling that reads back as this float: what the user typed
    else:
        text = str(value).strip()
    try:
        d = Decimal(text) * factor
    except (InvalidOperation, ValueError):
        return 0, "unreadable"
    if not d.is_finite():
        return 0, "non-finite"
    if d != d.to_integral_value():
        return 0, "fraction"
    n = int(d)
    if not -(2**63) <= n <= _INT64_MAX:
        return 0, "range"
    return n, None


def cents_to_micros(name: str) -> str:
    """The one-line fix for a column of cents: neither unit, cents x 10,000 are micros."""
    return f"add value_micros = {name} * 10_000 (pl.col({name!r}) * 10_000)"


def check_unit_plausible(column: pl.Series, *, what: str, unit: str) -> None:
    """Refuse a unit that contradicts the column: a factor of a million, silently (docs/contract.md §1.1).

    A column whose name says cents (``amount_cents``), under either unit; ``unit="currency"`` on a column whose
    name says micros (``value_micros``, ``revenue_micros``); ``unit="micros"`` on a column whose name does not
    and that is a decimal with decimal places (``NUMERIC(12, 2)``), or an integer or decimal whose median
    non-zero value is under one cent as micros (an order of 50 read as 0.00005: it holds currency units). A
    column of true micros that small is read when its name says micros.

    Raises
    ------
    SchemaError
        Any of these contradictions, with the option that reads the column right.
    """
    name = column.name
    says_micros = "micros" in name.lower()
    if _CENTS.search(name) and not says_micros:
        raise SchemaError(
            f"{what} column {name!r} is named as cents, neither micros nor currency units (read as "
            f"{'currency' if unit == 'currency' else 'micros'} it would be {'100 times too large' if unit == 'currency' else '10,000 times too small'}): "
            f"{cents_to_micros(name)} and drop value_column, or rename the column if it does not hold cents"
        )
    if unit == "currency" and says_micros:
        raise SchemaError(
            f"{what} column {name!r} is named as micros, but value_unit='currency' reads it as currency units, a "
            f"million times larger (49_990_000 micros would become 49,990,000.00): drop value_unit='currency' "
            f"(micros is the default), or rename the column if it holds amounts like 49.99"
        )
    if unit != "micros" or says_micros or not (column.dtype.is_integer() or column.dtype.is_decimal()):
        return
    places = getattr(column.dtype, "scale", 0) or 0
    if places > 0:  # NUMERIC(12, 2): amounts like 49.99, never integer micros
        raise SchemaError(
            f"{what} column {name!r} is a decimal with {places} decimal places, amounts like 49.99, but is read as "
            "integer micros (value_unit defaults to 'micros'): pass value_unit='currency'"
        )
    nonzero = column.filter(column != 0).abs().cast(pl.Float64)
    typical = float(nonzero.median()) if nonzero.len() else math.inf  # type: ignore[arg-type]
    if typical < _IMPLAUSIBLE_MICROS:
        raise SchemaError(
            f"{what} column {name!r} is read as integer micros (value_unit defaults to 'micros'), but its median "
            f"value {typical:g} would be {typical / MICROS_PER_UNIT:g} currency units, under a cent: if it holds "
            f"amounts like {typical:g}.00, pass value_unit='currency'; if it really holds micros, "
            f"name it '{name}_micros'"
        )
