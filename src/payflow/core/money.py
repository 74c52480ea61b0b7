"""Money: integer minor units plus an ISO-4217 currency. The only place that knows a currency's digits."""

from __future__ import annotations

CURRENCY_DIGITS: dict[str, int] = {"USD": 2}
DEFAULT_CURRENCY = "USD"
