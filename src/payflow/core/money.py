"""Money: integer minor units plus an ISO-4217 currency.

This module is the only place that knows how many digits a currency has. Amounts are parsed and
formatted here, at the API edge; everything inside payflow works on integers. Nothing is ever
rounded: an amount with more digits than its currency has is refused.

An amount arrives as a JSON string or a JSON number, and both are read by one grammar, over the
string's contents or the number's exact text (kept by `core.json_body`, never a float's digits):

    amount   = [ "-" ] whole [ "." fraction ]
    whole    = "0" / nonzero *digit        ; no leading zeros
    fraction = 1*digit
    nonzero  = "1" / "2" / ... / "9"
    digit    = "0" / nonzero               ; ASCII only

That is a JSON number without an exponent. Then: at most the currency's digits after the point
(trailing zeros count: "1.000" has three), greater than zero, and at most `MAX_MINOR_UNITS`. So
"12.50", "12.5", "7", 12.5 and 7 are amounts. Not amounts: "1e2" and 1e2, " 3", "+3", "03", ".5",
"5.", "1_000", "\u0661" (Arabic-Indic one), "\uff11" (fullwidth one), "NaN" and NaN, "Infinity",
"12.345", 0.0100000000000000001 (too many decimals, whatever a float would make of it), and
a bare Python float, whose digits are not the client's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from payflow.core.json_body import JsonNumber

CURRENCY_DIGITS: dict[str, int] = {"USD": 2}
DEFAULT_CURRENCY = "USD"
# The seed's Decimal(12,2): the largest balance and the largest single amount, in USD cents.
MAX_MINOR_UNITS = 999_999_999_999

_AMOUNT = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_MALFORMED = 'amount must be a plain decimal such as "12.50" (ASCII digits, no exponent)'


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
        match = _AMOUNT.fullmatch(_text_of(value))
        if match is None:
            raise InvalidAmount(_MALFORMED)
        sign, whole, fraction = match[1], match[2], match[3] or ""
        if len(fraction) > digits:
            raise InvalidAmount(f"amount has more than {digits} decimal places")
        # Checked before int(): a whole part longer than the maximum's is too large whatever it is.
        if len(whole) > len(str(MAX_MINOR_UNITS // 10**digits)):
            raise InvalidAmount(_too_large(currency))
        minor = int(whole + fraction.ljust(digits, "0"))
        if sign or minor == 0:
            raise InvalidAmount("amount must be greater than zero")
        if minor > MAX_MINOR_UNITS:
            raise InvalidAmount(_too_large(currency))
        return cls(minor, currency)

    def __str__(self) -> str:
        return format_minor(self.minor, self.currency)


def _text_of(value: object) -> str:
    """The text the client wrote: a string's contents or a JSON number's own digits."""
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a JSON integer: its text has no other spelling
    raise InvalidAmount("amount must be a decimal string or a JSON number")


def _too_large(currency: str) -> str:
    return f"amount must not exceed {format_minor(MAX_MINOR_UNITS, currency)}"


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


def _amount_schema(currency: str) -> dict[str, Any]:
    """The grammar above as JSON Schema, with the currency's digits and the maximum (all nines,
    so the longest whole part and the digits bound it exactly)."""
    digits = CURRENCY_DIGITS[currency]
    whole_digits = len(str(MAX_MINOR_UNITS // 10**digits))
    fraction = rf"(\.[0-9]{{1,{digits}}})?" if digits else ""
    return {
        "oneOf": [
            {
                "type": "string",
                "pattern": rf"^(0|[1-9][0-9]{{0,{whole_digits - 1}}}){fraction}$",
                "not": {"pattern": r"^0(\.0*)?$"},  # zero is not an amount
                "examples": [format_minor(1250, currency)],
            },
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_MINOR_UNITS / 10**digits,
                "multipleOf": 10**-digits,
            },
        ],
        "description": (
            "A positive amount with at most the currency's digits "
            f"({currency}: {digits}), as a string or a number: ASCII digits, an optional point "
            "and fraction, no exponent."
        ),
    }


# A request field holding a positive amount in the default currency.
Amount = Annotated[
    Money,
    BeforeValidator(_parse_amount),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(_amount_schema(DEFAULT_CURRENCY)),
]
