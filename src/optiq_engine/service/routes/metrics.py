"""``GET /v1/metrics`` and ``GET /v1/credit``: the reports of :mod:`optiq_engine.service.metrics` as JSON."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Query
from fastapi.responses import Response

from ...errors import ConfigError
from ..dependencies import Caller, Conn
from ..errors import RuleConfigError
from ..metrics import CurrencyConversion, MetricsQuery, read_credit, read_metrics
from ..schemas import ERROR_RESPONSES, ConversionName, GrainName, IdFilter, Model, Platform, Rate, Rows

__all__ = ["router"]

router = APIRouter()


def _rows_response(grain: str, start: date, end: date, frame: pl.DataFrame) -> Response:
    """:class:`Rows` as JSON, the rows serialized by Polars (the report's columns are strings, dates, int64
    micros and finite floats): no per-cell Python validation of thousands of rows."""
    head = json.dumps({"grain": grain, "start": start.isoformat(), "end": end.isoformat()})
    return Response(content=f'{head[:-1]}, "rows": {frame.write_json()}}}', media_type="application/json")


@router.get("/v1/metrics", tags=["metrics"], responses=ERROR_RESPONSES, response_model=Rows)
def metrics(
    caller: Caller,
    conn: Conn,
    start: date,
    end: date,
    grain: GrainName = "campaign",
    model: Model = "LAST_TOUCH",
    daily: bool = False,
    compare: bool = True,
    platform: Platform | None = None,
    ad_account_id: IdFilter = None,
    campaign_id: IdFilter = None,
    ad_id: IdFilter = None,
    currency: Annotated[
        str | None, Query(pattern="^[A-Z]{3}$", description="Report every amount in this currency")
    ] = None,
    rate: Annotated[
        list[Rate] | None, Query(description="Conversion rates to `currency`, e.g. `EUR:1.08` (repeat)")
    ] = None,
    conversion_name: ConversionName = None,
) -> Response:
    """Spend, delivery and attributed results per key (and day), with the previous-period comparison.

    At grain ``channel`` spend is mapped to channels by the rules that give touchpoints theirs (a platform's
    spend goes to the channel of its click id: ``google_ads``, ``meta_ads``, ``tiktok_ads``); ROAS is the
    model's revenue credited to the channel over that spend. Spend no rule maps is the row whose
    ``channel`` is null (``name`` ``(unmapped)``); the channels' spend adds up to the organization's.
    ``conversion_name`` keeps the attributed results of one conversion type (spend is not per type).
    """
    conversion = None
    if currency is not None:
        conversion = CurrencyConversion(currency, dict(r.split(":", 1) for r in rate or []))
    elif rate:
        raise RuleConfigError({"currency": "required with rate: the currency the rates convert to"})
    query = MetricsQuery(
        caller.organization_id,
        start,
        end,
        model=model,
        grain=grain,
        daily=daily,
        compare=compare,
        platform=platform,
        ad_account_id=ad_account_id,
        campaign_id=campaign_id,
        ad_id=ad_id,
        conversion=conversion,
        conversion_name=conversion_name,
    )
    return _rows_response(grain, start, end, read_metrics(query, conn, require_results=True))


@router.get("/v1/credit", tags=["metrics"], responses=ERROR_RESPONSES, response_model=Rows)
def credit(
    caller: Caller,
    conn: Conn,
    start: date,
    end: date,
    grain: GrainName = "channel",
    model: Annotated[list[Model] | None, Query(description="Models (repeat); default all")] = None,
    conversion_name: ConversionName = None,
) -> Response:
    """Attributed conversions and revenue per key and model, as the engine wrote them."""
    if start > end:
        raise ConfigError(f"start {start} must not be after end {end}")
    frame = read_credit(
        conn,
        organization_id=caller.organization_id,
        start=start,
        end=end,
        models=model,
        grain=grain,
        conversion_name=conversion_name,
    )
    return _rows_response(grain, start, end, frame)
