"""Refunds of wallet orders (docs/api.md, Orders) and reading orders (who may see what)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from payflow.audit.order_checks import check_order_ledger
from payflow.audit.service import run_audit
from payflow.wiring import AppContext
from tests.support import (
    Account,
    assert_problem,
    balance,
    create_product,
    deposit,
    ledger,
    register,
)


async def _setup(
    client: httpx.AsyncClient,
) -> tuple[Account, Account, dict[str, Any], dict[str, Any]]:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant, price="30.00", units=5)
    response = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=buyer.headers,
    )
    assert response.status_code == 201, response.text
    return merchant, buyer, product, response.json()


async def _refund(
    client: httpx.AsyncClient, who: Account, order_id: str, **body: Any
) -> httpx.Response:
    return await client.post(f"/orders/{order_id}/refund", json=body or None, headers=who.headers)


async def test_the_merchant_refunds_a_wallet_order(client: httpx.AsyncClient, app: FastAPI) -> None:
    merchant, buyer, product, order = await _setup(client)
    response = await _refund(client, merchant, order["id"], reason="damaged")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "REFUNDED"
    assert await balance(client, buyer) == "100.00"
    assert await balance(client, merchant) == "0.00"
    stock = (await client.get(f"/products/{product['id']}")).json()["availableUnits"]
    assert stock == 5
    buyer_refund = (await ledger(client, buyer))[0]
    merchant_refund = (await ledger(client, merchant))[0]
    for row in (buyer_refund, merchant_refund):
        assert row["type"] == "REFUND"
        assert row["amount"] == "30.00"
        assert row["referenceType"] == "ORDER"
        assert row["referenceId"] == order["id"]
    assert buyer_refund["balanceAfter"] == "100.00"
    assert merchant_refund["balanceAfter"] == "0.00"
    ctx: AppContext = app.state.context
    assert (await run_audit(ctx.db)).ok
    assert await ctx.db.read(check_order_ledger) == []


async def test_refunding_twice_is_impossible(client: httpx.AsyncClient) -> None:
    merchant, buyer, _, order = await _setup(client)
    assert (await _refund(client, merchant, order["id"])).status_code == 200
    assert_problem(await _refund(client, merchant, order["id"]), 409, "ORDER_STATE_CONFLICT")
    assert await balance(client, buyer) == "100.00"


async def test_concurrent_refunds_of_one_order_refund_once(client: httpx.AsyncClient) -> None:
    merchant, buyer, _, order = await _setup(client)
    await deposit(client, merchant, "500.00")
    responses = await asyncio.gather(*(_refund(client, merchant, order["id"]) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 7
    assert await balance(client, buyer) == "100.00"
    assert await balance(client, merchant) == "500.00"


async def test_a_merchant_that_cannot_cover_the_refund_gets_insufficient_funds(
    client: httpx.AsyncClient,
) -> None:
    merchant, buyer, _, order = await _setup(client)
    await client.post("/wallet/withdraw", json={"amount": "20.00"}, headers=merchant.headers)
    assert_problem(await _refund(client, merchant, order["id"]), 400, "INSUFFICIENT_FUNDS")
    assert await balance(client, buyer) == "70.00"
    assert (await client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()[
        "status"
    ] == "COMPLETED"


async def test_only_the_merchant_may_refund(client: httpx.AsyncClient) -> None:
    _merchant, buyer, _, order = await _setup(client)
    assert_problem(await _refund(client, buyer, order["id"]), 403, "FORBIDDEN")
    stranger = await register(client, role="MERCHANT")
    assert_problem(await _refund(client, stranger, order["id"]), 404, "NOT_FOUND")
    assert await balance(client, buyer) == "70.00"


async def test_another_users_order_is_404_like_a_random_id(client: httpx.AsyncClient) -> None:
    merchant, buyer, _, order = await _setup(client)
    stranger = await register(client)
    theirs = await client.get(f"/orders/{order['id']}", headers=stranger.headers)
    random = await client.get(f"/orders/{uuid.uuid4()}", headers=stranger.headers)
    malformed = await client.get("/orders/not-an-id", headers=stranger.headers)
    bodies = [assert_problem(r, 404, "NOT_FOUND") for r in (theirs, random, malformed)]
    assert {b["detail"] for b in bodies} == {"Order not found"}
    assert {b["title"] for b in bodies} == {bodies[0]["title"]}
    assert (await client.get(f"/orders/{order['id']}", headers=buyer.headers)).status_code == 200
    assert (await client.get(f"/orders/{order['id']}", headers=merchant.headers)).status_code == 200


async def test_buyers_list_their_orders_and_merchants_their_sales(
    client: httpx.AsyncClient,
) -> None:
    merchant, buyer, product, first = await _setup(client)
    second = (
        await client.post(
            "/orders",
            json={"productId": product["id"], "paymentMethod": "WALLET", "quantity": 2},
            headers=buyer.headers,
        )
    ).json()
    mine = (await client.get("/orders", headers=buyer.headers)).json()
    assert [o["id"] for o in mine["data"]] == [second["id"], first["id"]]
    sales = (await client.get("/orders/merchant/sales", headers=merchant.headers)).json()
    assert [o["id"] for o in sales["data"]] == [second["id"], first["id"]]
    assert (await client.get("/orders", headers=merchant.headers)).json()["data"] == []
    assert_problem(
        await client.get("/orders/merchant/sales", headers=buyer.headers), 403, "FORBIDDEN"
    )
    await _refund(client, merchant, first["id"])
    refunded = (await client.get("/orders?status=REFUNDED", headers=buyer.headers)).json()["data"]
    assert [o["id"] for o in refunded] == [first["id"]]
    assert_problem(
        await client.get("/orders?status=NOPE", headers=buyer.headers), 400, "VALIDATION_ERROR"
    )


async def test_order_pages_return_each_order_once(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant, price="1.00", units=50)
    for _ in range(13):
        await client.post(
            "/orders",
            json={"productId": product["id"], "paymentMethod": "WALLET"},
            headers=buyer.headers,
        )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/orders", params=params, headers=buyer.headers)).json()
        seen.extend(o["id"] for o in page["data"])
        cursor = page["meta"]["nextCursor"]
        if not cursor:
            break
    assert len(seen) == 13
    assert len(set(seen)) == 13
    bad = await client.get("/orders", params={"cursor": "garbage!"}, headers=buyer.headers)
    assert_problem(bad, 400, "VALIDATION_ERROR")
