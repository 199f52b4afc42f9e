"""The HTTP API's request and response shapes: query and path parameter types, the bodies of alert rules
and evaluations, the report of :mod:`~optiq_engine.service.routes.metrics`, and the error responses every
route documents.

Validation here is the API's own (422 naming the field): text without NUL bytes or lone surrogates, and a
rule's ``config`` JSON bounded so that Postgres' jsonb and the platform's JavaScript hold it exactly. What a
config *means* per rule type is checked by :mod:`optiq_engine.service.conditions`.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from ..io.schema import ALERT_EVENT_STATUSES, ALERT_SEVERITIES, ALERT_TYPES, ATTRIBUTION_MODELS, PLATFORM_CODES
from .metrics import GRAINS

__all__ = [
    "ERROR_RESPONSES",
    "MAX_CONFIG_NUMBER",
    "ConversionName",
    "EvaluationOut",
    "EventStatus",
    "GrainName",
    "Id",
    "IdFilter",
    "Model",
    "Platform",
    "Rate",
    "RuleIn",
    "RuleType",
    "Rows",
    "Severity",
]


def _upper(value: object) -> object:
    """Model names are case-insensitive, as in Python's ``get_model``: ``linear`` is ``LINEAR``."""
    return value.upper() if isinstance(value, str) else value


Model = Annotated[Literal[ATTRIBUTION_MODELS], BeforeValidator(_upper)]  # type: ignore[valid-type]
GrainName = Literal[GRAINS]  # type: ignore[valid-type]
Platform = Literal[PLATFORM_CODES]  # type: ignore[valid-type]
EventStatus = Literal[ALERT_EVENT_STATUSES]  # type: ignore[valid-type]
Severity = Literal[ALERT_SEVERITIES]  # type: ignore[valid-type]
RuleType = Literal[ALERT_TYPES]  # type: ignore[valid-type]
# A rate is at most 999999.999999999999 units of the target per unit (the largest real ones are in the tens of
# thousands): converted amounts then stay within Postgres' bigint micros.
Rate = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}:[0-9]{1,6}(\.[0-9]{1,12})?$")]
Id = Annotated[str, Path(min_length=1, max_length=200)]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
ConversionName = Annotated[
    str | None, Query(min_length=1, max_length=200, description="Only the conversions of this type (their name)")
]

#: The error responses the routes document in OpenAPI (their bodies are made by
#: :mod:`optiq_engine.service.error_handlers`).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key"},
    403: {"description": "The key's role does not allow this"},
    404: {"description": "Not found in the key's organization"},
    422: {"description": "Invalid request (the field is named)"},
}


class Rows(BaseModel):
    """A report: its parameters and one object per row."""

    grain: str
    start: date
    end: date
    rows: list[dict[str, Any]]


#: JSON numbers of a rule's config are integers or finite floats within +-(2**53 - 1): what the platform's
#: JavaScript reads exactly, and far beyond any real threshold (9e15 micros is 9 billion units of a currency).
MAX_CONFIG_NUMBER = 2**53 - 1
_MAX_CONFIG_DEPTH = 32


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{where} must not contain a NUL byte (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} must be valid Unicode (no lone surrogate \\ud800-\\udfff)") from None


def _check_config(value: Any, where: str = "config", depth: int = 0) -> None:
    """Raise ValueError naming the first string (key or value) or number of a config that Postgres' jsonb or
    the evaluation cannot hold: NUL bytes, lone surrogates, numbers beyond +-(2**53 - 1), NaN and infinities."""
    if depth > _MAX_CONFIG_DEPTH:
        raise ValueError(f"{where} is nested more than {_MAX_CONFIG_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value}")
        if abs(value) > MAX_CONFIG_NUMBER:
            raise ValueError(
                f"{where} is out of range: {value} (numbers must be within +-{MAX_CONFIG_NUMBER}, i.e. 2**53 - 1)"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{where} key {key!r}")
            _check_config(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_config(item, f"{where}[{i}]", depth + 1)


class RuleIn(BaseModel):
    """A new alert rule (the seed's ``AlertRule`` fields); text without NUL bytes, config numbers bounded."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    type: RuleType
    severity: Severity = "WARNING"
    status: Literal["ACTIVE", "PAUSED"] = "ACTIVE"
    config: dict[str, Any] = Field(default_factory=dict)
    evaluationInterval: int = Field(3600, ge=60, le=30 * 86400)  # noqa: N815 - the seed's field name
    notifyEmail: bool = True  # noqa: N815
    notifyInApp: bool = True  # noqa: N815
    notifySlack: bool = False  # noqa: N815

    @field_validator("name")
    @classmethod
    def _name_is_text(cls, value: str) -> str:
        _check_text(value, "name")
        return value

    @field_validator("config")
    @classmethod
    def _config_is_bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_config(value)
        return value


class EvaluationOut(BaseModel):
    rule_id: str
    action: str
    event_id: str | None = None
    error: str | None = None
