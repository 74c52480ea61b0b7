"""Money: integer minor units plus an ISO-4217 currency.

This module is the only place that knows how many digits a currency has. Amounts are parsed and
formatted here, at the API edge; everything inside payflow works on integers. Nothing is ever
rounded: an amount with more digits than its currency has is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

CURRENCY_DIGITS: dict[str, int] = {"USD": 2}
DEFAULT_CURRENCY = "USD"
# The seed's Decimal(12,2): the largest balance and the largest single amount, in USD cents.
MAX_MINOR_UNITS = 999_999_999_999


class InvalidAmount(ValueError):
    """An amount that cannot be money: malformed, not finite, too precise, not positive, too big."""


@dataclass(frozen=True, slots=True, order=True)
class Money:
    minor: int
    currency: str

    def __post_init__(self) -> None:
        if self.currency not in CURRENCY_DIGITS:
            raise InvalidAmount(f"unsupported currency {self.currency!r}")

    @classmethod
    def parse(cls, value: object, currency: str = DEFAULT_CURRENCY) -> Money:
        """A positive amount from a JSON string or number, exactly, or InvalidAmount."""
        digits = CURRENCY_DIGITS.get(currency)
        if digits is None:
            raise InvalidAmount(f"unsupported currency {currency!r}")
        decimal = _to_decimal(value)
        if not decimal.is_finite():
            raise InvalidAmount("amount must be a finite number")
        exponent = decimal.as_tuple().exponent
        assert isinstance(exponent, int)  # noqa: S101 - finite decimals have an int exponent
        if -exponent > digits:
            raise InvalidAmount(f"amount has more than {digits} decimal places")
        if decimal <= 0:
            raise InvalidAmount("amount must be greater than zero")
        if decimal.adjusted() > 15:
            raise InvalidAmount("amount is too large")
        minor = int(decimal.scaleb(digits))
        if minor > MAX_MINOR_UNITS:
            raise InvalidAmount(f"amount must not exceed {format_minor(MAX_MINOR_UNITS, currency)}")
        return cls(minor, currency)

    def __str__(self) -> str:
        return format_minor(self.minor, self.currency)


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise InvalidAmount("amount must be a decimal string or a number")
    if isinstance(value, float):
        # JSON numbers arrive as floats; their shortest repr is exactly what the client wrote
        # whenever that fits a double, so "12.5" stays 12.5 and "0.1" stays 0.1 (never 0.1000…01).
        value = repr(value)
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, str):
        raise InvalidAmount("amount must be a decimal string or a number")
    text = value.strip()
    if not text or len(text) > 40:
        raise InvalidAmount('amount must be a decimal string such as "12.50"')
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise InvalidAmount('amount must be a decimal string such as "12.50"') from exc


def format_minor(minor: int, currency: str) -> str:
    """Minor units as a decimal string with exactly the currency's digits: 1250 → "12.50"."""
    digits = CURRENCY_DIGITS[currency]
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}" if digits else f"{sign}{whole}"


def _parse_amount(value: Any) -> Money:
    if isinstance(value, Money):
        return value
    return Money.parse(value)


# A request field holding a positive amount in the default currency.
Amount = Annotated[
    Money,
    BeforeValidator(_parse_amount),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "oneOf": [
                {
                    "type": "string",
                    "pattern": r"^\d{1,10}(\.\d{1,2})?$",
                    "not": {"pattern": r"^0*(\.0*)?$"},  # zero is not an amount
                    "examples": ["12.50"],
                },
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 9999999999.99,
                    "multipleOf": 0.01,
                },
            ],
            "description": "A positive amount with at most the currency's digits (USD: 2).",
        }
    ),
]
