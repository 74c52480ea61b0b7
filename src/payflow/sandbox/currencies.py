"""What Stripe knows about currencies that the sandbox needs: minor-unit digits and charge limits.

Stripe's own tables, not payflow's (payflow's currency table lives in core/money.py): the sandbox
accepts any currency Stripe would, and refuses totals Stripe would refuse.
"""

from __future__ import annotations

_ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
_THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
# Stripe's minimum charge per currency, in minor units, for the common ones.
MINIMUM_CHARGE: dict[str, int] = {"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "jpy": 50}
# Stripe caps an amount at eight digits of minor units (USD 999,999.99).
MAXIMUM_CHARGE = 99_999_999


def minor_digits(currency: str) -> int:
    if currency in _ZERO_DECIMAL:
        return 0
    if currency in _THREE_DECIMAL:
        return 3
    return 2


def format_amount(minor: int, currency: str) -> str:
    """`1250, "usd"` → `"12.50 USD"`, for the hosted page."""
    digits = minor_digits(currency)
    if digits == 0:
        return f"{minor} {currency.upper()}"
    whole, fraction = divmod(minor, 10**digits)
    return f"{whole:,}.{fraction:0{digits}d} {currency.upper()}"
