"""``read_metrics``: the report a :class:`MetricsQuery` asks for, from its one SQL query to a frame with the
ratio and change columns; a row adding up several currencies is refused."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import polars as pl
from sqlalchemy import Connection, text

from ..errors import CurrencyError, NotFoundError
from .probes import check_time_zones, has_attribution_results, is_summarized, no_results_message
from .query import BASE_METRICS, METRICS, MetricsQuery, key_column
from .sql import _metrics_sql


def _div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """``num / den`` as a float, null when ``den`` is zero or null."""
    return pl.when(den != 0).then(num.cast(pl.Float64) / den.cast(pl.Float64))


@functools.cache
def _derived(compare: bool) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Expressions of the :data:`RATIO_METRICS` (and, with ``compare``, their previous values) and of the
    ``_change`` columns; built once (reports run them on a few thousand rows, where building costs more)."""
    ratios = [e for suffix in (("", "_previous") if compare else ("",)) for e in _ratios(suffix)]
    changes = [_div(pl.col(n), pl.col(f"{n}_previous")).sub(1).alias(f"{n}_change") for n in METRICS] if compare else []
    return ratios, changes


def _ratios(suffix: str) -> list[pl.Expr]:
    """The :data:`RATIO_METRICS` of the base metrics with ``suffix`` (money rounded half away from zero)."""
    s, i, k, c, r = (
        pl.col(f"{n}{suffix}") for n in ("spend_micros", "impressions", "clicks", "conversions", "revenue_micros")
    )

    def micros(e: pl.Expr) -> pl.Expr:
        return e.round(0, mode="half_away_from_zero").cast(pl.Int64)

    exprs = {
        "roas": _div(r, s),
        "cpa_micros": micros(_div(s, c)),
        "cpc_micros": micros(_div(s, k)),
        "ctr": _div(k, i),
        "conversion_rate": _div(c, k),
    }
    return [e.alias(f"{n}{suffix}") for n, e in exprs.items()]


def _schema(query: MetricsQuery) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {
        key_column(query.grain): pl.String(),
        "name": pl.String(),
        "currency": pl.String(),
    }
    if query.daily:
        schema["date"] = pl.Date()
    schema.update(METRICS)
    if query.compare:
        schema.update({f"{n}_previous": t for n, t in METRICS.items()})
        schema.update({f"{n}_change": pl.Float64() for n in METRICS})
    return schema


def read_metrics(query: MetricsQuery, connection: Connection, *, require_results: bool = False) -> pl.DataFrame:
    """The report ``query`` asks for, computed by Postgres in one query.

    Parameters
    ----------
    query
        What to report (organization, period, model, grain, filters, currency conversion).
    connection
        An open SQLAlchemy connection (psycopg driver); not closed here.
    require_results
        Refuse a report whose rows credit no conversion when the organization has no attribution link of
        ``query.model`` (and ``query.conversion_name``) at all: a model never run would read as zero conversions
        and a ROAS of 0. Spend-only readers (spend alerts) leave it off.

    Returns
    -------
    polars.DataFrame
        One row per key (and day with ``daily``) that has spend or attributed conversions in the period or
        the previous one, sorted by key and day, and the row (key null, last) of the conversions credited
        to touchpoints with no key of the grain (not at grain ``ad``): the key column (:func:`key_column`), ``name``,
        ``currency``, ``date`` (``daily`` only), the :data:`METRICS` and, with ``compare``, their
        ``_previous`` and ``_change`` columns.

    Raises
    ------
    CurrencyError
        If a row would add up amounts in several currencies and ``query.conversion`` is None, or the
        conversion has no rate for a currency found.
    NotFoundError
        With ``require_results``, if the rows credit nothing and the organization has no link of the model.

    Examples
    --------
    >>> q = MetricsQuery("org_1", date(2024, 5, 1), date(2024, 5, 31), grain="campaign")  # doctest: +SKIP
    >>> read_metrics(q, connection).select("campaign_id", "spend_micros", "roas")  # doctest: +SKIP
    """
    check_time_zones(connection, query.organization_id)
    summarized = is_summarized(connection, query.organization_id)
    sql, params = _metrics_sql(query, summarized=summarized)
    result = connection.execute(text(sql), params)
    names = list(result.keys())
    rows = result.all()
    at = {name: i for i, name in enumerate(names)}
    key, currencies, missing = at["key"], at["currencies"], at["missing_rates"]
    mixed = {r[key]: r[currencies] for r in rows if r[currencies]}
    _check_currencies(query, connection, summarized, mixed, [r[missing] for r in rows if r[missing]])
    schema = _schema(query)
    dtypes = {**schema, "key": pl.String(), "day": pl.Date(), "currencies": pl.String(), "missing_rates": pl.String()}
    for name in BASE_METRICS:
        dtypes[f"{name}_p"] = dtypes[name]
    frame = pl.DataFrame(rows, schema={n: dtypes[n] for n in names}, orient="row").lazy()
    previous = {f"{n}_p": f"{n}_previous" for n in BASE_METRICS} if query.compare else {}
    frame = frame.rename({"key": key_column(query.grain), "day": "date", **previous})
    ratios, changes = _derived(query.compare)
    frame = frame.with_columns(ratios)
    if changes:
        frame = frame.with_columns(changes)
    floats = [n for n, t in schema.items() if t == pl.Float64()]
    out = frame.select(list(schema)).with_columns(_finite(n) for n in floats).collect()
    credited = any(out[n].abs().sum() for n in ("conversions", "conversions_previous") if n in out.columns)
    if require_results and out.height and not credited and not has_attribution_results(query, connection):
        raise NotFoundError(no_results_message(query))
    return out


def _check_currencies(
    query: MetricsQuery, connection: Connection, summarized: bool, mixed: Mapping[str, str], missing: list[str]
) -> None:
    """Raise :class:`CurrencyError` for ``mixed`` rows (key -> two of its currencies; a second query lists
    them all) or ``missing`` rates (comma-separated currencies without a rate)."""
    if mixed and query.conversion is None:
        sql, params = _metrics_sql(query, summarized=summarized, listing=True)
        rows = connection.execute(text(f"SELECT key, currencies FROM ({sql}) t"), params).all()
        found = {k: sorted(set(v.split(","))) for k, v in rows if v and len(set(v.split(","))) > 1}
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(found.items())[:5])
        raise CurrencyError(
            f"{len(found)} {key_column(query.grain)} row(s) would add up amounts in different currencies ({shown}); "
            f"report at a grain with one currency per row (ad_account, campaign, ad), filter to one ad account, or "
            f"pass a CurrencyConversion(target=..., rates=...) to convert",
            found,
        )
    absent = sorted({c for m in missing for c in m.split(",")})
    if absent:
        assert query.conversion is not None
        raise CurrencyError(
            f"no conversion rate to {query.conversion.target} for {', '.join(absent)}; add them to "
            f"CurrencyConversion.rates",
            {c: [c] for c in absent},
        )


def _finite(name: str) -> pl.Expr:
    """Null instead of NaN or infinity (none are expected; this keeps the promise if one slips through)."""
    col = pl.col(name)
    return pl.when(col.is_finite()).then(col).otherwise(None).alias(name)


def finite_or_none(value: float | None) -> float | None:
    """``value`` unless it is NaN or infinite (JSON has neither)."""
    return None if value is None or not math.isfinite(value) else value
