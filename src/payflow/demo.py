"""`payflow demo`: a ready marketplace on the configured database, made through payflow's own API
(so every invariant holds): a merchant with a few products and a funded buyer."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import httpx

from payflow.app import create_app
from payflow.config import Environment, Settings
from payflow.core.logging import configure_logging
from payflow.paths import API_PREFIX

MERCHANT = ("merchant@demo.payflow.dev", "demo-merchant-password")
BUYER = ("buyer@demo.payflow.dev", "demo-buyer-password")
PRODUCTS = [
    ("The Payments Engineer's Handbook (e-book)", "24.00", 50),
    ("Idempotency Keys, Explained (video course)", "49.00", 20),
    ("Ledger Design Patterns (PDF)", "9.50", 100),
]
BUYER_FUNDS = "250.00"


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class Demo:
    merchant: dict[str, Any]
    buyer: dict[str, Any]
    products: list[dict[str, Any]]
    buyer_balance: str


async def _account(
    client: httpx.AsyncClient, email: str, password: str, role: str
) -> dict[str, Any]:
    """Register the account, or log in if it already exists (the demo can be run again)."""
    registered = await client.post(
        "/auth/register", json={"email": email, "password": password, "role": role}
    )
    if registered.status_code == 201:
        body: dict[str, Any] = registered.json()
        return body
    login = await client.post("/auth/login", json={"email": email, "password": password})
    if login.status_code != 200:
        raise DemoError(f"cannot use the demo account {email}: {login.text}")
    body = login.json()
    return body


async def seed(settings: Settings) -> Demo:
    if settings.environment == Environment.PRODUCTION:
        raise DemoError("refusing to seed demo accounts in production")
    app = create_app(settings)
    configure_logging(settings, console=sys.stderr)  # stdout is the demo's own output
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=f"http://demo{API_PREFIX}"
        ) as client:
            merchant = await _account(client, *MERCHANT, "MERCHANT")
            buyer = await _account(client, *BUYER, "USER")
            merchant_auth = {"Authorization": f"Bearer {merchant['accessToken']}"}
            buyer_auth = {"Authorization": f"Bearer {buyer['accessToken']}"}
            listed = await client.get("/products/merchant/my-products", headers=merchant_auth)
            products = listed.json()["data"]
            if not products:
                for name, price, units in PRODUCTS:
                    created = await client.post(
                        "/products",
                        json={"name": name, "price": price, "availableUnits": units},
                        headers=merchant_auth,
                    )
                    if created.status_code != 201:
                        raise DemoError(f"cannot create a demo product: {created.text}")
                    products.append(created.json())
                funded = await client.post(
                    "/wallet/deposit", json={"amount": BUYER_FUNDS}, headers=buyer_auth
                )
                if funded.status_code != 201:
                    raise DemoError(f"cannot fund the demo buyer: {funded.text}")
            balance = (await client.get("/wallet", headers=buyer_auth)).json()["balance"]
    return Demo(merchant=merchant, buyer=buyer, products=products, buyer_balance=balance)


def instructions(demo: Demo, settings: Settings) -> str:
    base = settings.public_url.rstrip("/")
    products = sorted(demo.products, key=lambda p: str(p["name"]))  # the same order every run
    product = products[0]
    lines = [
        "payflow demo marketplace is ready.",
        "",
        f"  merchant  {MERCHANT[0]}  password {MERCHANT[1]}",
        f"  buyer     {BUYER[0]}  password {BUYER[1]}  (wallet: {demo.buyer_balance} USD)",
        "",
        "  products:",
        *(f"    {p['id']}  {p['price']} USD  {p['name']}" for p in products),
        "",
        "Buy through the payments sandbox in a browser:",
        "  1. make serve   (or .venv/bin/payflow serve; in another terminal, from the repository)",
        f"  2. TOKEN=$(curl -s -X POST {base}{API_PREFIX}/auth/login -H 'Content-Type: application/json' \\",
        f'       -d \'{{"email": "{BUYER[0]}", "password": "{BUYER[1]}"}}\' | python3 -c \'import json,sys; print(json.load(sys.stdin)["accessToken"])\')',
        f'  3. curl -s -X POST {base}{API_PREFIX}/orders -H "Authorization: Bearer $TOKEN" \\',
        "       -H 'Content-Type: application/json' \\",
        f'       -d \'{{"productId": "{product["id"]}", "paymentMethod": "GATEWAY"}}\'',
        "  4. open the checkoutUrl it prints, press Pay (or Decline, or Cancel);",
        "     you land on the success page and the order becomes COMPLETED.",
        '  Or pay from the wallet: the same request with "paymentMethod": "WALLET".',
        f"  Everything is also in Swagger UI: {base}/docs (Authorize with the token).",
    ]
    return "\n".join(lines)
