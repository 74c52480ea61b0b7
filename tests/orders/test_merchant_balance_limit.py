"""A merchant whose wallet is at the balance maximum cannot be paid more: a wallet purchase from it
is refused and moves nothing (the gateway side, a refund, is in tests/payments/test_stuck_payments)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from payflow.audit.service import run_audit
from tests.support import assert_problem, balance, create_product, deposit, register

MAXIMUM = "9999999999.99"


async def test_a_wallet_purchase_whose_earning_would_overflow_the_merchant_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant, buyer = await register(client, role="MERCHANT"), await register(client)
    product = await create_product(client, merchant, price="12.50", units=3)
    await deposit(client, merchant, MAXIMUM)
    await deposit(client, buyer, "20.00")

    response = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=buyer.headers,
    )

    assert_problem(response, 400, "VALIDATION_ERROR")
    assert await balance(client, buyer) == "20.00"
    assert await balance(client, merchant) == MAXIMUM
    assert (await client.get(f"/products/{product['id']}")).json()["availableUnits"] == 3
    assert (await run_audit(app.state.context.db)).ok
