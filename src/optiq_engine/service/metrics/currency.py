"""Currency conversion of a report's amounts: the rates (:class:`CurrencyConversion`) and the SQL that
converts amounts and tells a row's currencies apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError

if TYPE_CHECKING:
    from .query import MetricsQuery


@dataclass(frozen=True)
class CurrencyConversion:
    """Rates to report every amount in one ``target`` currency.

    ``rates`` maps a currency code to the number of ``target`` units one unit of it is worth
    (``{"EUR": 1.08}`` with target ``USD``); the target's own rate is 1. Amounts are converted before
    they are added up, exactly (Postgres ``numeric``), then rounded to whole micros.

    Parameters
    ----------
    target
        The report's currency: a 3-letter upper-case ISO 4217 code (``"USD"``).
    rates
        Currency code -> ``target`` units per unit (positive, finite; a float is read through its decimal
        spelling). Stored as :class:`~decimal.Decimal`, with the target's own rate 1 added.

    Raises
    ------
    ConfigError
        A code that is not 3 upper-case ASCII letters, a rate that is not a positive finite number, or a
        target rate other than 1.
    """

    target: str
    rates: Mapping[str, Decimal | float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not _is_currency(self.target):
            raise ConfigError(f"target currency must be a 3-letter ISO 4217 code like 'USD', got {self.target!r}")
        clean: dict[str, Decimal] = {self.target: Decimal(1)}
        for currency, rate in dict(self.rates).items():
            if not isinstance(currency, str) or not _is_currency(currency):
                raise ConfigError(f"currency codes must be 3 upper-case letters like 'EUR', got {currency!r}")
            try:
                value = Decimal(str(rate))
            except InvalidOperation:
                value = Decimal("NaN")
            if not value.is_finite() or value <= 0:
                raise ConfigError(f"rate of {currency} must be a positive finite number, got {rate!r}")
            if currency == self.target and value != 1:
                raise ConfigError(f"the rate of the target currency {currency} must be 1, got {rate!r}")
            clean[currency] = value
        object.__setattr__(self, "rates", clean)


def _is_currency(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def _fx_cte(conversion: CurrencyConversion | None, params: dict[str, Any]) -> str:
    """SQL: the CTE ``fx(currency, rate)`` of the conversion's rates (nothing without a conversion)."""
    if conversion is None:
        return ""
    values = []
    for i, (currency, rate) in enumerate(conversion.rates.items()):
        params[f"fx_c{i}"], params[f"fx_r{i}"] = currency, str(rate)
        values.append(f"(CAST(:fx_c{i} AS text), CAST(:fx_r{i} AS numeric))")
    return f"fx (currency, rate) AS (VALUES {', '.join(values)}),\n"


def _currencies(query: MetricsQuery, currency: str, listing: bool, *, single: bool = False) -> str:
    """SQL: a side's currency aggregates per key and day: ``cmin`` and ``cmax`` (one currency when equal;
    ``listing``: ``clist``, all of them, for the error message) and, with a conversion, ``miss`` (those
    without a rate); ``single``: the same columns of one row (no aggregation)."""
    if single:
        out = f"{currency} AS clist" if listing else f"{currency} AS cmin, {currency} AS cmax"
        miss = f"CASE WHEN fx.rate IS NULL THEN {currency} END"
    else:
        out = (
            f"string_agg({currency}, ',') AS clist" if listing else f"min({currency}) AS cmin, max({currency}) AS cmax"
        )
        miss = f"string_agg({currency}, ',') FILTER (WHERE fx.rate IS NULL)"
    return out + (f", {miss} AS miss" if query.conversion is not None else "")
