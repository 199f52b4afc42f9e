"""Errors of the service layer, subclasses of the :mod:`optiq_engine.errors` hierarchy."""

from __future__ import annotations

from ..errors import ConfigError, InputError, OptiqError

__all__ = ["CurrencyError", "RuleConfigError", "NotFoundError", "TransitionError", "PermissionDeniedError"]


class CurrencyError(InputError):
    """Amounts in different currencies would be added into one total and no conversion table was given.

    Parameters
    ----------
    message
        The error message.
    currencies
        Copied into :attr:`currencies` (default: none).

    Attributes
    ----------
    currencies
        The currencies found, by key of the offending rows (e.g. ``{"GOOGLE_ADS": ["EUR", "USD"]}``).
    """

    def __init__(self, message: str, currencies: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.currencies: dict[str, list[str]] = dict(currencies or {})


class RuleConfigError(ConfigError):
    """An alert rule (its ``config`` JSON or another field) is invalid; one message per field.

    Parameters
    ----------
    errors
        Field path -> what is wrong with it; copied into :attr:`errors` and joined into the message.
    rule_type
        The rule's type, named in the message (``"invalid SPEND_THRESHOLD alert rule: ..."``); default None.

    Attributes
    ----------
    errors
        Field path -> what is wrong with it, e.g. ``{"config.threshold": "required: spend in micros > 0"}``.
    """

    def __init__(self, errors: dict[str, str], *, rule_type: str | None = None) -> None:
        self.errors: dict[str, str] = dict(errors)
        what = f"invalid {rule_type} alert rule" if rule_type else "invalid alert rule"
        super().__init__(f"{what}: " + "; ".join(f"{field}: {msg}" for field, msg in self.errors.items()))


class NotFoundError(OptiqError, LookupError):
    """No such row in the caller's organization (rows of another organization are not found either)."""


class TransitionError(OptiqError, ValueError):
    """An alert lifecycle operation that the event's current status does not allow."""


class PermissionDeniedError(OptiqError, PermissionError):
    """The caller's role does not allow the operation (e.g. a VIEWER writing)."""
