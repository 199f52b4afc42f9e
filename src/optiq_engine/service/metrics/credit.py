"""``read_credit``: attributed conversions and revenue per key and model, as the engine wrote them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import polars as pl
from sqlalchemy import Connection, text

from ...channels import ChannelRules
from ...errors import ConfigError
from ...io.schema import ATTRIBUTION_MODELS
from .probes import is_summarized
from .query import Grain, MetricsQuery, key_column
from .sql import _credit_cte


def read_credit(
    connection: Connection,
    *,
    organization_id: str,
    start: date,
    end: date,
    models: list[str] | tuple[str, ...] | None = None,
    grain: Grain = "channel",
    channel_rules: ChannelRules | None = None,
    conversion_name: str | None = None,
) -> pl.DataFrame:
    """Attributed conversions and revenue per key and model, as the engine wrote them to ``AttributionLink``.

    Parameters
    ----------
    connection
        An open SQLAlchemy connection; not closed here.
    organization_id, start, end
        The tenant and the days (inclusive) conversions occurred on.
    models
        ``AttributionModel`` values; default every model with links.
    grain
        Key to group by (:data:`GRAINS`); ``organization`` gives one row per model.
    channel_rules
        With grain ``channel``: the rules deriving a touchpoint's channel (default None: the engine's).
    conversion_name
        Only the conversions of this type (``TrackingEvent.name``; :class:`MetricsQuery`).

    Returns
    -------
    polars.DataFrame
        Columns: the key column, ``model``, ``conversions`` (float64, sum of weights) and
        ``revenue_micros`` (int64, sum of weight x conversion value), sorted by key and model. Revenue is
        the conversions' value as tracked, not converted between currencies.

    Raises
    ------
    ConfigError
        An unknown model, or an invalid query (:class:`MetricsQuery`: dates, grain, period over 3660 days).
    """
    models = tuple(models) if models else ATTRIBUTION_MODELS
    bad = [m for m in models if m not in ATTRIBUTION_MODELS]
    if bad:
        raise ConfigError(f"unknown model(s) {bad}; valid: {', '.join(ATTRIBUTION_MODELS)}")
    query = MetricsQuery(
        organization_id,
        start,
        end,
        grain=grain,
        compare=False,
        channel_rules=channel_rules,
        conversion_name=conversion_name,
    )
    params: dict[str, Any] = {
        "org": organization_id,
        "models": list(models),
        "lo": start,
        "hi": end,
        "start": start,
        "lo_ts": datetime.combine(start - timedelta(days=1), time(), tzinfo=UTC),
        "hi_ts": datetime.combine(end + timedelta(days=2), time(), tzinfo=UTC),
    }
    summarized = is_summarized(connection, organization_id)
    credit = _credit_cte(
        query, params, models=' = ANY(CAST(:models AS "AttributionModel"[]))', summarized=summarized, by_model=True
    )
    sql = (
        f"WITH {credit.rstrip().rstrip(',')}\nSELECT key, model, sum(conv)::float8 AS conversions, "
        "round(COALESCE(sum(rev), 0))::bigint AS revenue_micros FROM credit GROUP BY key, model ORDER BY key, model"
    )
    rows = connection.execute(text(sql), params).all()
    schema = {
        key_column(grain): pl.String(),
        "model": pl.String(),
        "conversions": pl.Float64(),
        "revenue_micros": pl.Int64(),
    }
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")
