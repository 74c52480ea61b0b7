"""Where things are served: every URL prefix is built from these constants."""

from __future__ import annotations

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
# The pages a buyer's browser returns to from Checkout (orders/checkout_pages.py).
PAYMENTS_PREFIX = "/payments"
WEBHOOK_PATH = f"{API_PREFIX}/webhooks/stripe"
# The built-in payments sandbox, mounted when no STRIPE_SECRET_KEY is set.
SANDBOX_PREFIX = "/sandbox"
