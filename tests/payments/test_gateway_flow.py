"""Gateway purchases end to end (docs/api.md) against the embedded payments sandbox.

Each test runs a real payflow (uvicorn on a free port) on a fresh database — SQLite, and
PostgreSQL + Redis when configured — and pays through the sandbox's control API instead of a
browser. Every test ends with the audit (docs/api.md, Invariants).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from payflow.orders import checkout
from payflow.orders import repository as orders_repo
from payflow.orders.models import OrderStatus
from payflow.payments.gateway import CheckoutSession, StripeGateway
from tests.payments.live import SWEEPER_INTERVAL, Live, live_fixture  # noqa: F401
from tests.sandbox.harness import press
from tests.support import assert_problem, deposit


async def test_a_gateway_order_reserves_stock_opens_checkout_and_completes_when_paid(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=5)

    first = await live.checkout(buyer, product["id"], quantity=2, key="gateway-order-1")

    assert first.status_code == 201, first.text
    body = first.json()
    order, session_id = body["order"], body["sessionId"]
    assert set(body) == {"order", "checkoutUrl", "sessionId"}
    assert session_id.startswith("cs_test_")
    assert body["checkoutUrl"] == f"{live.base}/sandbox/checkout/{session_id}"
    assert order["status"] == "PENDING"
    assert order["paymentMethod"] == "GATEWAY"
    assert (order["quantity"], order["unitPrice"], order["amount"]) == (2, "12.50", "25.00")
    assert order["stripeSessionId"] == session_id
    assert order["userId"] == buyer.id
    assert order["merchantId"] == merchant.id
    # The units are reserved with the order: off sale, not sold.
    assert await live.available(product["id"]) == 3
    assert await live.stock(product["id"]) == (3, 2)

    # The session carries what docs/api.md, Orders asks for.
    session = await live.session(session_id)
    assert (session["status"], session["payment_status"]) == ("open", "unpaid")
    assert (session["amount_total"], session["currency"]) == (2500, "usd")
    assert session["client_reference_id"] == order["id"]
    assert session["metadata"] == {"order_id": order["id"]}
    assert abs(session["expires_at"] - (time.time() + 60)) < 15
    assert session["success_url"] == (
        f"{live.base}/api/v1/payments/success?session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert session["cancel_url"].startswith(f"{live.base}/api/v1/payments/cancel?")

    # A replay is the stored response, byte for byte, and opens nothing new.
    replay = await live.checkout(buyer, product["id"], quantity=2, key="gateway-order-1")
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(live.sandbox.store.sessions) == 1
    assert await live.stock(product["id"]) == (3, 2)
    mismatch = await live.checkout(buyer, product["id"], quantity=1, key="gateway-order-1")
    assert_problem(mismatch, 422, "IDEMPOTENCY_KEY_MISMATCH")

    pending = await live.api.get("/payments/success", params={"session_id": session_id})
    assert pending.status_code == 200
    assert pending.json()["status"] == "PENDING"

    await live.act(session_id, "pay")
    completed = await live.wait_for(buyer, order["id"], "COMPLETED")

    assert completed["completedAt"] is not None
    assert await live.stock(product["id"]) == (3, 0)
    assert await live.available(product["id"]) == 3
    assert await live.balance(merchant) == "25.00"
    earnings = [row for row in await live.ledger(merchant) if row["referenceId"] == order["id"]]
    assert [(row["type"], row["amount"], row["referenceType"]) for row in earnings] == [
        ("EARNING", "25.00", "ORDER")
    ]
    assert await live.balance(buyer) == "0.00"  # the card paid, not the wallet
    assert await live.ledger(buyer) == []
    success = await live.api.get("/payments/success", params={"session_id": session_id})
    assert success.json()["status"] == "COMPLETED"
    assert (await live.order(merchant, order["id"]))["status"] == "COMPLETED"
    await live.audit_ok()


async def test_a_sandbox_outage_during_checkout_is_a_502_and_leaves_nothing_behind(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=3)
    armed = await live.control.post("/faults", params={"mode": "error"})
    assert armed.status_code == 200, armed.text

    response = await live.checkout(buyer, product["id"], key="during-outage")

    problem = assert_problem(response, 502, "PAYMENT_GATEWAY_ERROR")
    assert "Stripe" in problem["detail"]
    # Stock and orders as if nothing happened: the reservation was released, the order FAILED.
    assert await live.available(product["id"]) == 3
    assert await live.stock(product["id"]) == (3, 0)
    listed = await live.api.get("/orders", headers=buyer.headers)
    assert listed.status_code == 200, listed.text
    orders = listed.json()["data"]
    assert [o["status"] for o in orders] == ["FAILED"]
    assert orders[0]["failureReason"].startswith("PAYMENT_GATEWAY_ERROR")
    assert orders[0]["paymentMethod"] == "GATEWAY"
    # Nobody was charged: no session, no payment at the gateway, the buyer's wallet untouched.
    assert live.sandbox.store.sessions == {}
    assert live.sandbox.store.intents == {}
    assert live.sandbox.faults.injected >= 1
    assert await live.balance(buyer) == "0.00"
    assert await live.ledger(buyer) == []

    # The outcome is stored under the key: a replay during the outage is the same 502.
    replay = await live.checkout(buyer, product["id"], key="during-outage")
    assert replay.status_code == 502
    assert replay.content == response.content
    assert replay.headers["idempotent-replayed"] == "true"

    # Once the gateway is back, a new purchase works.
    cleared = await live.control.delete("/faults")
    assert cleared.status_code == 200
    body = await live.buy(buyer, product["id"])
    assert body["order"]["status"] == "PENDING"
    assert await live.stock(product["id"]) == (2, 1)
    await live.audit_ok()


async def test_an_expired_event_overtaking_the_buyers_cancel_keeps_the_buyers_reason(
    live: Live,
) -> None:
    """The race behind a rare failure: cancelling expires the checkout first, and the gateway's
    `expired` event may be processed before the cancellation's own transaction. Here it always
    is: the gateway delivers the event before its expiry call returns."""
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=4)
    body = await live.buy(buyer, product["id"], quantity=2)
    order_id = uuid.UUID(body["order"]["id"])
    await live.deliveries(False)  # the test delivers the event itself, at the worst moment
    delivered: list[str] = []

    class EventFirst(StripeGateway):
        async def expire_session(self, session_id: str) -> CheckoutSession:
            session = await super().expire_session(session_id)
            expired = await live.event(session_id, "checkout.session.expired")
            await live.deliver(expired)
            delivered.append(expired["id"])
            return session

    async with live.own_context(EventFirst) as ctx:
        order = await ctx.db.read(lambda conn: orders_repo.get(conn, order_id))
        assert order is not None
        cancelled = await checkout.cancel(ctx, order, "CANCELLED: by the buyer")

    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.failure_reason == "CANCELLED: by the buyer"
    assert await live.inbox(delivered[0]) == ["cancelled"]
    assert await live.stock(product["id"]) == (4, 0)
    await live.audit_ok()


async def test_the_buyer_cancels_a_pending_order(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    stranger = await live.register()
    product = await live.product(merchant, units=4)
    body = await live.buy(buyer, product["id"], quantity=2)
    order_id, session_id = body["order"]["id"], body["sessionId"]
    assert await live.stock(product["id"]) == (2, 2)

    by_merchant = await live.api.post(f"/orders/{order_id}/cancel", headers=merchant.headers)
    assert_problem(by_merchant, 403, "FORBIDDEN")
    by_stranger = await live.api.post(f"/orders/{order_id}/cancel", headers=stranger.headers)
    assert_problem(by_stranger, 404, "NOT_FOUND")
    assert await live.stock(product["id"]) == (2, 2)

    headers = {**buyer.headers, "Idempotency-Key": "cancel-1"}
    cancelled = await live.api.post(f"/orders/{order_id}/cancel", headers=headers)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    assert cancelled.json()["failureReason"].startswith("CANCELLED")
    assert await live.available(product["id"]) == 4
    assert await live.stock(product["id"]) == (4, 0)
    assert (await live.session(session_id))["status"] == "expired"

    replay = await live.api.post(f"/orders/{order_id}/cancel", headers=headers)
    assert replay.status_code == 200
    assert replay.content == cancelled.content
    assert replay.headers["idempotent-replayed"] == "true"
    again = await live.api.post(f"/orders/{order_id}/cancel", headers=buyer.headers)
    assert_problem(again, 409, "ORDER_STATE_CONFLICT")

    # The sandbox announces the expiry. Its event may reach payflow before the cancellation's
    # own transaction (then it cancels, with the buyer's reason) or after (then it finds the order
    # cancelled): either way the units are released once.
    expired = await live.event(session_id, "checkout.session.expired")
    await live.wait_for_delivery(expired["id"])
    assert await live.inbox(expired["id"]) in (["no_change"], ["cancelled"])
    assert (await live.order(buyer, order_id))["status"] == "CANCELLED"
    assert await live.stock(product["id"]) == (4, 0)
    await live.audit_ok()


async def test_cancel_on_the_hosted_page_returns_to_payments_cancel_which_cancels(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=2)
    body = await live.buy(buyer, product["id"])
    order_id, session_id = body["order"]["id"], body["sessionId"]

    # The Cancel button on the hosted page: a 303 to the order's cancel URL, as Stripe does.
    button = await press(live.api, body["checkoutUrl"], "cancel")
    assert button.status_code == 303
    location = button.headers["location"]
    assert location == (await live.session(session_id))["cancel_url"]

    # A forged token is a 404, and changes nothing.
    query = parse_qs(urlsplit(location).query)
    forged = await live.api.get(
        "/payments/cancel", params={"order_id": query["order_id"][0], "token": "0" * 32}
    )
    assert_problem(forged, 404, "NOT_FOUND")
    assert await live.stock(product["id"]) == (1, 1)

    returned = await live.api.get(location)

    assert returned.status_code == 200, returned.text
    assert returned.json()["orderId"] == order_id
    assert returned.json()["status"] == "CANCELLED"
    assert (await live.order(buyer, order_id))["status"] == "CANCELLED"
    assert await live.stock(product["id"]) == (2, 0)
    assert (await live.session(session_id))["status"] == "expired"
    # Coming back again (a reload) shows the same, and releases nothing twice.
    again = await live.api.get(location)
    assert again.status_code == 200
    assert again.json()["status"] == "CANCELLED"
    assert await live.stock(product["id"]) == (2, 0)

    await live.audit_ok()


async def test_a_merchant_cannot_cancel_a_buyers_order_through_payments_cancel(
    live: Live,
) -> None:
    """The merchant may not cancel (POST /orders/{id}/cancel is a 403), so no session id, no
    other order's token and no guessed token lets the merchant do it through the GET."""
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=3)
    body = await live.buy(buyer, product["id"], quantity=2)
    order_id, session_id = body["order"]["id"], body["sessionId"]
    other = await live.buy(buyer, product["id"])
    other_cancel_url = str((await live.session(other["sessionId"]))["cancel_url"])
    other_token = parse_qs(urlsplit(other_cancel_url).query)["token"][0]

    attempts = [
        {"session_id": session_id},
        {"session_id": session_id, "order_id": order_id},
        {"order_id": order_id},
        {"order_id": order_id, "token": "0" * 32},
        {"order_id": order_id, "token": other_token},
    ]
    for params in attempts:
        refused = await live.api.get("/payments/cancel", params=params)
        assert_problem(refused, 404, "NOT_FOUND")

    assert (await live.order(buyer, order_id))["status"] == "PENDING"
    assert (await live.order(buyer, other["order"]["id"]))["status"] == "PENDING"
    assert await live.stock(product["id"]) == (0, 3)
    assert (await live.session(session_id))["status"] == "open"
    await live.audit_ok()


async def test_merchants_never_see_the_checkout_session_id_and_buyers_do(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=3)
    body = await live.buy(buyer, product["id"])
    order_id, session_id = body["order"]["id"], body["sessionId"]

    sales = await live.api.get("/orders/merchant/sales", headers=merchant.headers)
    assert sales.status_code == 200, sales.text
    assert [(o["id"], o["stripeSessionId"]) for o in sales.json()["data"]] == [(order_id, None)]
    assert (await live.order(merchant, order_id))["stripeSessionId"] is None
    assert session_id not in sales.text

    mine = await live.api.get("/orders", headers=buyer.headers)
    assert [o["stripeSessionId"] for o in mine.json()["data"]] == [session_id]
    assert (await live.order(buyer, order_id))["stripeSessionId"] == session_id


async def test_payments_pages_for_unknown_sessions_are_404(live: Live) -> None:
    unknown = await live.api.get("/payments/success", params={"session_id": "cs_test_nope"})
    assert_problem(unknown, 404, "NOT_FOUND")
    missing = await live.api.get("/payments/success")
    assert_problem(missing, 404, "NOT_FOUND")
    cancel_unknown = await live.api.get("/payments/cancel", params={"session_id": "cs_test_x"})
    assert_problem(cancel_unknown, 404, "NOT_FOUND")
    cancel_nothing = await live.api.get("/payments/cancel")
    assert_problem(cancel_nothing, 404, "NOT_FOUND")


async def test_an_expired_checkout_without_any_event_releases_its_stock(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=3)
    await live.deliveries(False)  # no event will ever reach payflow
    body = await live.buy(buyer, product["id"], quantity=2)
    order_id, session_id = body["order"]["id"], body["sessionId"]
    still_open = await live.buy(buyer, product["id"])  # not due: must stay reserved
    assert await live.stock(product["id"]) == (0, 3)

    await live.expire_reservation(order_id)
    started = time.monotonic()
    order = await live.wait_for(buyer, order_id, "CANCELLED", within=6 * SWEEPER_INTERVAL)

    assert time.monotonic() - started < 6 * SWEEPER_INTERVAL
    assert order["failureReason"].startswith("EXPIRED")
    assert await live.stock(product["id"]) == (2, 1)
    assert await live.available(product["id"]) == 2
    assert (await live.session(session_id))["status"] == "expired"  # no longer payable
    assert (await live.order(buyer, still_open["order"]["id"]))["status"] == "PENDING"
    assert await live.inbox_size() == 0
    await live.audit_ok()


async def test_the_merchant_refunds_a_gateway_order_through_the_gateway(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    stranger = await live.register()
    product = await live.product(merchant, price="12.50", units=3)
    body = await live.buy(buyer, product["id"])
    order_id = body["order"]["id"]
    await live.act(body["sessionId"], "pay")
    await live.wait_for(buyer, order_id, "COMPLETED")
    intent = (await live.session(body["sessionId"]))["payment_intent"]
    assert await live.balance(merchant) == "12.50"
    assert await live.stock(product["id"]) == (2, 0)

    by_buyer = await live.api.post(f"/orders/{order_id}/refund", headers=buyer.headers)
    assert_problem(by_buyer, 403, "FORBIDDEN")
    by_stranger = await live.api.post(f"/orders/{order_id}/refund", headers=stranger.headers)
    assert_problem(by_stranger, 404, "NOT_FOUND")
    # A merchant who spent the earnings cannot refund: nothing moves.
    spent = await live.api.post(
        "/wallet/withdraw", json={"amount": "12.50"}, headers=merchant.headers
    )
    assert spent.status_code == 201, spent.text
    broke = await live.api.post(f"/orders/{order_id}/refund", headers=merchant.headers)
    assert_problem(broke, 400, "INSUFFICIENT_FUNDS")
    assert (await live.order(merchant, order_id))["status"] == "COMPLETED"
    assert live.sandbox_refunds(intent) == []
    await deposit(live.api, merchant, "12.50")

    refunded = await live.api.post(
        f"/orders/{order_id}/refund", json={"reason": "customer asked"}, headers=merchant.headers
    )

    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "REFUNDED"
    assert refunded.json()["stripeSessionId"] is None  # the merchant's view of the order
    assert (await live.order(buyer, order_id))["stripeSessionId"] == body["sessionId"]
    assert await live.balance(merchant) == "0.00"
    refunds = [r for r in await live.ledger(merchant) if r["type"] == "REFUND"]
    assert [(r["amount"], r["referenceType"], r["referenceId"]) for r in refunds] == [
        ("12.50", "ORDER", order_id)
    ]
    assert await live.ledger(buyer) == []  # the card is refunded, not the wallet
    assert await live.stock(product["id"]) == (3, 0)
    assert await live.available(product["id"]) == 3
    [outbox] = await live.refund_rows(order_id)
    assert (outbox["status"], outbox["amount"], outbox["payment_intent_id"]) == (
        "SUCCEEDED",
        1250,
        intent,
    )
    assert [(r.amount, r.currency) for r in live.sandbox_refunds(intent)] == [(1250, "usd")]

    twice = await live.api.post(f"/orders/{order_id}/refund", headers=merchant.headers)
    assert_problem(twice, 409, "ORDER_STATE_CONFLICT")
    assert len(live.sandbox_refunds(intent)) == 1
    assert await live.balance(merchant) == "0.00"
    await live.audit_ok()


async def test_a_refund_the_gateway_could_not_take_is_retried_until_it_is_made_once(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=2)
    body = await live.buy(buyer, product["id"])
    order_id = body["order"]["id"]
    await live.act(body["sessionId"], "pay")
    await live.wait_for(buyer, order_id, "COMPLETED")
    intent = (await live.session(body["sessionId"]))["payment_intent"]
    armed = await live.control.post("/faults", params={"mode": "error"})
    assert armed.status_code == 200, armed.text

    refunded = await live.api.post(f"/orders/{order_id}/refund", headers=merchant.headers)

    # The refund is decided and committed with the order; sending it waits for the gateway.
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "REFUNDED"
    assert await live.balance(merchant) == "0.00"
    [outbox] = await live.refund_rows(order_id)
    assert outbox["status"] == "PENDING"
    assert outbox["attempts"] >= 1
    assert outbox["last_error"]
    assert live.sandbox_refunds(intent) == []
    await live.audit_ok()

    cleared = await live.control.delete("/faults")
    assert cleared.status_code == 200
    deadline = time.monotonic() + 6 * SWEEPER_INTERVAL
    while (await live.refund_rows(order_id))[0]["status"] != "SUCCEEDED":
        assert time.monotonic() < deadline, "the sweeper did not retry the refund"
        await asyncio.sleep(0.05)
    for _ in range(3):  # more sweeps: nothing more is sent
        await live.sweep()
    assert [r.amount for r in live.sandbox_refunds(intent)] == [1250]
    await live.audit_ok()


async def test_a_transient_gateway_error_is_retried_and_opens_one_session(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=3)
    armed = await live.control.post("/faults", params={"mode": "error", "count": 2})
    assert armed.status_code == 200, armed.text

    body = await live.buy(buyer, product["id"])

    # The SDK retried with the same idempotency key: one session, one reservation.
    assert live.sandbox.faults.injected == 2
    assert list(live.sandbox.store.sessions) == [body["sessionId"]]
    assert body["order"]["status"] == "PENDING"
    assert await live.stock(product["id"]) == (2, 1)
    await live.audit_ok()


async def test_a_checkout_already_paid_cannot_be_cancelled_and_completes(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=2)
    await live.deliveries(False)  # the payment's event is still on its way
    body = await live.buy(buyer, product["id"])
    order_id, session_id = body["order"]["id"], body["sessionId"]
    await live.act(session_id, "pay")

    refused = await live.api.post(f"/orders/{order_id}/cancel", headers=buyer.headers)
    assert_problem(refused, 409, "ORDER_STATE_CONFLICT")
    page = await live.api.get(str((await live.session(session_id))["cancel_url"]))
    assert page.status_code == 200, page.text
    assert page.json()["status"] == "PENDING"  # shown, not cancelled
    assert await live.stock(product["id"]) == (1, 1)

    await live.deliveries(True)
    event = await live.event(session_id, "checkout.session.completed")
    redelivered = await live.control.post(f"/events/{event['id']}/deliver")
    assert redelivered.status_code == 200, redelivered.text
    await live.wait_for(buyer, order_id, "COMPLETED")
    assert await live.stock(product["id"]) == (1, 0)
    assert await live.ledger_rows(order_id) == [(merchant.id, "EARNING")]
    await live.audit_ok()


async def test_concurrent_refunds_of_a_gateway_order_refund_it_once(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=2)
    body = await live.buy(buyer, product["id"])
    order_id = body["order"]["id"]
    await live.act(body["sessionId"], "pay")
    await live.wait_for(buyer, order_id, "COMPLETED")
    intent = (await live.session(body["sessionId"]))["payment_intent"]

    responses = await asyncio.gather(
        *(
            live.api.post(
                f"/orders/{order_id}/refund",
                headers={**merchant.headers, "Idempotency-Key": f"refund-{n}"},
            )
            for n in range(5)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "ORDER_STATE_CONFLICT")
    assert await live.balance(merchant) == "0.00"
    assert await live.stock(product["id"]) == (2, 0)
    assert [r.amount for r in live.sandbox_refunds(intent)] == [1250]
    await live.audit_ok()


async def test_reserved_units_cannot_be_bought_by_anyone_else(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    rival = await live.register()
    product = await live.product(merchant, units=2)
    await live.buy(buyer, product["id"], quantity=2)

    gateway = await live.checkout(rival, product["id"])
    assert_problem(gateway, 409, "OUT_OF_STOCK")
    await deposit(live.api, rival, "50.00")
    wallet = await live.api.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=rival.headers,
    )
    assert_problem(wallet, 409, "OUT_OF_STOCK")
    own = await live.checkout(merchant, product["id"])
    assert_problem(own, 409, "PRODUCT_UNAVAILABLE")

    assert len(live.sandbox.store.sessions) == 1  # no checkout opened for a refused order
    assert await live.stock(product["id"]) == (0, 2)
    assert await live.balance(rival) == "50.00"
    await live.audit_ok()
