"""POST /orders with paymentMethod WALLET (docs/api.md, Orders)."""

from __future__ import annotations

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


async def _buy(
    client: httpx.AsyncClient,
    buyer: Account,
    product_id: str,
    quantity: int = 1,
    *,
    key: str | None = None,
) -> httpx.Response:
    headers = {**buyer.headers, **({"Idempotency-Key": key} if key else {})}
    return await client.post(
        "/orders",
        json={"productId": product_id, "paymentMethod": "WALLET", "quantity": quantity},
        headers=headers,
    )


async def _product(client: httpx.AsyncClient, product_id: str) -> dict[str, object]:
    response = await client.get(f"/products/{product_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def _audit_ok(app: FastAPI) -> None:
    ctx: AppContext = app.state.context
    report = await run_audit(ctx.db)
    assert report.ok, report.as_text()
    assert await ctx.db.read(check_order_ledger) == []


async def test_a_wallet_purchase_moves_stock_and_money_atomically(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant, price="12.50", units=5)

    response = await _buy(client, buyer, product["id"], quantity=2)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "COMPLETED"
    assert order["paymentMethod"] == "WALLET"
    assert order["quantity"] == 2
    assert order["unitPrice"] == "12.50"
    assert order["amount"] == "25.00"
    assert order["currency"] == "USD"
    assert order["userId"] == buyer.id
    assert order["merchantId"] == merchant.id
    assert order["productId"] == product["id"]
    assert order["completedAt"] is not None
    assert order["failureReason"] is None

    assert await balance(client, buyer) == "75.00"
    assert await balance(client, merchant) == "25.00"
    assert (await _product(client, product["id"]))["availableUnits"] == 3

    payment = (await ledger(client, buyer))[0]
    assert payment["type"] == "PAYMENT"
    assert payment["amount"] == "25.00"
    assert payment["referenceType"] == "ORDER"
    assert payment["referenceId"] == order["id"]
    earning = (await ledger(client, merchant))[0]
    assert earning["type"] == "EARNING"
    assert earning["referenceId"] == order["id"]
    await _audit_ok(app)


async def test_out_of_stock_changes_nothing_but_a_failed_order(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant, price="10.00", units=1)
    assert_problem(await _buy(client, buyer, product["id"], quantity=2), 409, "OUT_OF_STOCK")
    assert await balance(client, buyer) == "100.00"
    assert await balance(client, merchant) == "0.00"
    assert (await _product(client, product["id"]))["availableUnits"] == 1
    orders = (await client.get("/orders", headers=buyer.headers)).json()["data"]
    assert len(orders) == 1
    assert orders[0]["status"] == "FAILED"
    assert orders[0]["failureReason"].startswith("OUT_OF_STOCK")
    await _audit_ok(app)


async def test_insufficient_funds_changes_nothing_but_a_failed_order(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "9.99")
    product = await create_product(client, merchant, price="10.00", units=3)
    assert_problem(await _buy(client, buyer, product["id"]), 400, "INSUFFICIENT_FUNDS")
    assert await balance(client, buyer) == "9.99"
    assert (await _product(client, product["id"]))["availableUnits"] == 3
    assert len(await ledger(client, buyer)) == 1
    orders = (await client.get("/orders?status=FAILED", headers=buyer.headers)).json()["data"]
    assert [o["failureReason"].split(":")[0] for o in orders] == ["INSUFFICIENT_FUNDS"]
    await _audit_ok(app)


async def test_a_merchant_cannot_buy_its_own_product(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    await deposit(client, merchant, "100.00")
    product = await create_product(client, merchant)
    assert_problem(await _buy(client, merchant, product["id"]), 409, "PRODUCT_UNAVAILABLE")
    assert await balance(client, merchant) == "100.00"


async def test_inactive_and_deleted_products_cannot_be_bought(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    inactive = await create_product(client, merchant)
    patched = await client.patch(
        f"/products/{inactive['id']}", json={"isActive": False}, headers=merchant.headers
    )
    assert patched.status_code == 200, patched.text
    assert_problem(await _buy(client, buyer, inactive["id"]), 409, "PRODUCT_UNAVAILABLE")
    deleted = await create_product(client, merchant)
    assert (
        await client.delete(f"/products/{deleted['id']}", headers=merchant.headers)
    ).status_code == 204
    assert_problem(await _buy(client, buyer, deleted["id"]), 404, "NOT_FOUND")
    assert_problem(
        await _buy(client, buyer, "00000000-0000-0000-0000-000000000000"), 404, "NOT_FOUND"
    )
    assert await balance(client, buyer) == "100.00"


async def test_bad_order_requests_are_400_and_change_nothing(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant)
    bad_bodies = [
        {"productId": product["id"], "paymentMethod": "WALLET", "quantity": 0},
        {"productId": product["id"], "paymentMethod": "WALLET", "quantity": 101},
        {"productId": product["id"], "paymentMethod": "WALLET", "quantity": 1.5},
        {"productId": product["id"], "paymentMethod": "CASH"},
        {"productId": "not-a-uuid", "paymentMethod": "WALLET"},
        {"paymentMethod": "WALLET"},
        {"productId": product["id"], "paymentMethod": "WALLET", "amount": "0.01"},
        {"productId": product["id"], "paymentMethod": "WALLET", "userId": merchant.id},
    ]
    for body in bad_bodies:
        response = await client.post("/orders", json=body, headers=buyer.headers)
        assert_problem(response, 400, "VALIDATION_ERROR")
    assert await balance(client, buyer) == "100.00"
    assert (await client.get("/orders", headers=buyer.headers)).json()["data"] == []


async def test_idempotent_purchase_replays_and_never_charges_twice(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant, price="10.00", units=10)
    first = await _buy(client, buyer, product["id"], key="order-1")
    replay = await _buy(client, buyer, product["id"], key="order-1")
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    via_body = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET", "idempotencyKey": "order-1"},
        headers=buyer.headers,
    )
    assert via_body.content == first.content
    mismatch = await _buy(client, buyer, product["id"], quantity=2, key="order-1")
    assert_problem(mismatch, 422, "IDEMPOTENCY_KEY_MISMATCH")
    assert await balance(client, buyer) == "90.00"
    assert (await _product(client, product["id"]))["availableUnits"] == 9
    await _audit_ok(app)


async def test_a_failed_purchase_replays_its_failure(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    product = await create_product(client, merchant, price="10.00")
    first = await _buy(client, buyer, product["id"], key="k")
    assert_problem(first, 400, "INSUFFICIENT_FUNDS")
    await deposit(client, buyer, "50.00")
    replay = await _buy(client, buyer, product["id"], key="k")
    assert replay.content == first.content
    assert await balance(client, buyer) == "50.00"
    orders = (await client.get("/orders", headers=buyer.headers)).json()["data"]
    assert [o["status"] for o in orders] == ["FAILED"]


async def test_header_and_body_keys_must_agree(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    product = await create_product(client, merchant)
    response = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET", "idempotencyKey": "a"},
        headers={**buyer.headers, "Idempotency-Key": "b"},
    )
    assert_problem(response, 400, "VALIDATION_ERROR")


async def test_a_locked_buyer_wallet_refuses_the_purchase(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    import uuid

    from payflow.wallets import repository as wallets_repo

    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant)
    ctx: AppContext = app.state.context
    await ctx.db.transaction(
        lambda uow: wallets_repo.set_locked(uow.conn, uuid.UUID(buyer.id), True)
    )
    assert_problem(await _buy(client, buyer, product["id"]), 403, "WALLET_LOCKED")
    await ctx.db.transaction(
        lambda uow: wallets_repo.set_locked(uow.conn, uuid.UUID(merchant.id), True)
    )
    await ctx.db.transaction(
        lambda uow: wallets_repo.set_locked(uow.conn, uuid.UUID(buyer.id), False)
    )
    assert_problem(await _buy(client, buyer, product["id"]), 409, "PRODUCT_UNAVAILABLE")
    assert (await _product(client, product["id"]))["availableUnits"] == 10
    await _audit_ok(app)
