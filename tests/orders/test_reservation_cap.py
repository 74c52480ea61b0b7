"""A buyer's open gateway reservations are capped (RESERVATION_LIMIT, docs/api.md).

A gateway order reserves its units before anything is paid. Open orders (PENDING or
PAYMENT_PROCESSING, all products) of one buyer may number at most MAX_OPEN_RESERVATIONS_PER_BUYER
(default 10) and reserve at most MAX_RESERVED_UNITS_PER_BUYER units (default 100), the new order
included; beyond that `POST /orders` is 409 RESERVATION_LIMIT, recorded and replayed like
OUT_OF_STOCK. These tests run on the defaults.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.payments.live import Live, live_fixture  # noqa: F401
from tests.support import Account, assert_problem, deposit

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"


async def _refused(live: Live, buyer: Account, product_id: str, **kwargs: Any) -> httpx.Response:
    response = await live.checkout(buyer, product_id, **kwargs)
    assert_problem(response, 409, "RESERVATION_LIMIT")
    return response


async def _statuses(live: Live, buyer: Account) -> list[tuple[str, str | None]]:
    """(status, failure reason's code) of the buyer's orders, newest first."""
    response = await live.api.get("/orders", params={"limit": 100}, headers=buyer.headers)
    assert response.status_code == 200, response.text
    return [
        (order["status"], (order["failureReason"] or "").split(":")[0] or None)
        for order in response.json()["data"]
    ]


async def test_a_buyer_without_money_cannot_hoard_a_products_stock(live: Live) -> None:
    merchant = await live.register("MERCHANT")
    hoarder, shopper = await live.register(), await live.register()
    product = await live.product(merchant, units=1000)

    first = await live.buy(hoarder, product["id"], quantity=100)
    for _ in range(9):
        await _refused(live, hoarder, product["id"], quantity=100)

    assert first["order"]["status"] == "PENDING"
    assert await live.stock(product["id"]) == (900, 100)
    assert await live.available(product["id"]) == 900
    # Each refusal is on record, like an order refused for want of stock.
    assert await _statuses(live, hoarder) == [("FAILED", "RESERVATION_LIMIT")] * 9 + [
        ("PENDING", None)
    ]
    # Everyone else can still buy.
    other = await live.buy(shopper, product["id"], quantity=100)
    assert other["order"]["status"] == "PENDING"
    assert await live.stock(product["id"]) == (800, 200)
    await live.audit_ok()


async def test_at_most_ten_open_orders_over_all_products(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    products = [await live.product(merchant, units=20) for _ in range(2)]

    for n in range(10):
        await live.buy(buyer, products[n % 2]["id"])
    refused = await _refused(live, buyer, products[0]["id"])

    assert "10" in refused.json()["detail"]
    assert [await live.stock(p["id"]) for p in products] == [(15, 5), (15, 5)]
    # Wallet orders are not capped: they pay at once and reserve nothing.
    await deposit(live.api, buyer, "12.50")
    paid = await live.api.post(
        "/orders",
        json={"productId": products[0]["id"], "paymentMethod": "WALLET"},
        headers=buyer.headers,
    )
    assert paid.status_code == 201, paid.text
    assert await live.stock(products[0]["id"]) == (14, 5)
    await live.audit_ok()


async def test_at_most_a_hundred_reserved_units_the_new_order_included(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=500)

    await live.buy(buyer, product["id"], quantity=60)
    await _refused(live, buyer, product["id"], quantity=41)
    await live.buy(buyer, product["id"], quantity=40)  # exactly 100
    await _refused(live, buyer, product["id"], quantity=1)

    assert await live.stock(product["id"]) == (400, 100)
    await live.audit_ok()


async def test_a_cancelled_or_expired_order_frees_its_share(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=500)
    held = await live.buy(buyer, product["id"], quantity=100)
    refusal = await _refused(live, buyer, product["id"], quantity=100, key="while-held")

    cancelled = await live.api.post(f"/orders/{held['order']['id']}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 200, cancelled.text
    again = await live.buy(buyer, product["id"], quantity=100)
    # The refusal is an outcome, stored under its key: a replay repeats it even now.
    replay = await live.checkout(buyer, product["id"], quantity=100, key="while-held")
    assert replay.status_code == 409
    assert replay.content == refusal.content
    assert replay.headers["idempotent-replayed"] == "true"

    await live.expire_reservation(again["order"]["id"])  # the sweeper cancels it
    await live.wait_for(buyer, again["order"]["id"], "CANCELLED")
    last = await live.buy(buyer, product["id"], quantity=100)

    assert last["order"]["status"] == "PENDING"
    assert await live.stock(product["id"]) == (400, 100)
    await live.audit_ok()


async def test_an_order_awaiting_its_payment_counts_until_it_is_paid(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=500)
    await live.deliveries(False)
    body = await live.buy(buyer, product["id"], quantity=100)
    order_id, session_id = body["order"]["id"], body["sessionId"]
    await live.act(session_id, "pay-later")
    await live.deliver(await live.event(session_id, COMPLETED))
    assert (await live.order(buyer, order_id))["status"] == "PAYMENT_PROCESSING"

    await _refused(live, buyer, product["id"])

    await live.deliver(await _wait_for_event(live, session_id, ASYNC_SUCCEEDED))
    assert (await live.order(buyer, order_id))["status"] == "COMPLETED"
    after = await live.buy(buyer, product["id"], quantity=100)
    assert after["order"]["status"] == "PENDING"
    assert await live.stock(product["id"]) == (300, 100)
    await live.audit_ok()


async def _wait_for_event(live: Live, session_id: str, event_type: str) -> dict[str, Any]:
    """The sandbox reports an async payment's result after a delay (about a second)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        found = await live.events(session_id, event_type)
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"no {event_type} for {session_id}"
        await asyncio.sleep(0.1)
