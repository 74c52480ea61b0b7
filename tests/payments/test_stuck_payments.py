"""A verified payment always ends its order in a defined state, and one bad order never stalls the
sweeper (issue 13, defect 1).

The reproduction: a merchant whose wallet is at the balance maximum sells through the gateway.
Before, the paid event's merchant credit raised, the webhook answered 400 for ever, the order
stayed PENDING although paid, and after its expiry every sweep in every process failed on it, so
nobody else's abandoned reservation was released either.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.service import run_audit
from payflow.products.models import products
from tests.db_helpers import with_conn
from tests.payments.live import SWEEPER_INTERVAL, Live, encode, live_fixture, sign  # noqa: F401
from tests.support import assert_problem, deposit

MAXIMUM = "9999999999.99"
COMPLETED = "checkout.session.completed"


async def _set_reserved(live: Live, product_id: str, units: int) -> None:
    """Behind payflow's back: the product's reserved units (to make one order's step fail)."""
    statement = (
        sa.update(products)
        .where(products.c.id == uuid.UUID(product_id))
        .values(reserved_units=units)
    )

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(statement)

    await live.db.transaction(with_conn(work))


async def test_a_payment_the_merchants_wallet_cannot_take_is_refunded_not_left_pending(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=3)
    body = await live.buy(buyer, product["id"])
    order_id, session_id = body["order"]["id"], body["sessionId"]
    await deposit(live.api, merchant, MAXIMUM)

    await live.act(session_id, "pay")  # the sandbox delivers the signed paid event

    order = await live.wait_for(buyer, order_id, "REFUNDED")
    assert order["failureReason"].startswith("MERCHANT_CANNOT_BE_CREDITED")
    event = await live.event(session_id, COMPLETED)
    await live.wait_for_delivery(event["id"])  # acknowledged with a 2xx: Stripe stops retrying
    assert await live.inbox(event["id"]) == ["refunded_not_creditable"]
    assert (await live.refund_settled(order_id))["status"] == "SUCCEEDED"
    intent = (await live.session(session_id))["payment_intent"]
    assert [refund.amount for refund in live.sandbox_refunds(intent)] == [1250]
    assert await live.balance(merchant) == MAXIMUM
    assert await live.ledger_rows(order_id) == []
    assert await live.stock(product["id"]) == (3, 0)  # the reservation went back to stock
    await live.audit_ok()


async def test_the_sweeper_settles_that_payment_and_still_releases_everyone_elses_reservations(
    live: Live,
) -> None:
    rich, other = await live.register("MERCHANT"), await live.register("MERCHANT")
    buyer, shopper = await live.register(), await live.register()
    rich_product = await live.product(rich, price="12.50", units=2)
    other_product = await live.product(other, price="3.00", units=2)
    await live.deliveries(False)  # the paid event never comes: only the sweeper can settle it
    paid = await live.buy(buyer, rich_product["id"])
    abandoned = await live.buy(shopper, other_product["id"])
    await deposit(live.api, rich, MAXIMUM)
    await live.act(paid["sessionId"], "pay")
    # Both expired, the paid one first: before, the sweep raised on it and went no further.
    await live.expire_reservation(paid["order"]["id"], seconds_ago=60)
    await live.expire_reservation(abandoned["order"]["id"], seconds_ago=5)

    refunded = await live.wait_for(buyer, paid["order"]["id"], "REFUNDED")
    cancelled = await live.wait_for(shopper, abandoned["order"]["id"], "CANCELLED")

    assert refunded["failureReason"].startswith("MERCHANT_CANNOT_BE_CREDITED")
    assert cancelled["failureReason"].startswith("EXPIRED")
    assert (await live.refund_settled(paid["order"]["id"]))["status"] == "SUCCEEDED"
    assert await live.stock(rich_product["id"]) == (2, 0)
    assert await live.stock(other_product["id"]) == (2, 0)
    await live.audit_ok()


async def test_an_order_that_fails_to_sweep_is_skipped_and_the_others_are_swept(
    live: Live,
) -> None:
    merchant = await live.register("MERCHANT")
    buyer, shopper = await live.register(), await live.register()
    broken_product = await live.product(merchant, units=2)
    fine_product = await live.product(merchant, units=2)
    broken = await live.buy(buyer, broken_product["id"])
    fine = await live.buy(shopper, fine_product["id"])
    # Releasing the broken order's reservation fails: its product holds no reserved units.
    await _set_reserved(live, broken_product["id"], 0)
    await live.expire_reservation(broken["order"]["id"], seconds_ago=60)
    await live.expire_reservation(fine["order"]["id"], seconds_ago=5)

    # The server's sweeper meets the broken order first, every round.
    await live.wait_for(shopper, fine["order"]["id"], "CANCELLED")

    assert (await live.order(buyer, broken["order"]["id"]))["status"] == "PENDING"
    assert await live.stock(fine_product["id"]) == (2, 0)

    await _set_reserved(live, broken_product["id"], 1)  # repaired: the next round releases it
    await live.wait_for(buyer, broken["order"]["id"], "CANCELLED")
    assert await live.stock(broken_product["id"]) == (2, 0)
    await live.audit_ok()


async def test_an_event_that_cannot_be_processed_is_503_kept_and_named_by_the_audit(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=2)
    await live.deliveries(False)
    body = await live.buy(buyer, product["id"])
    order_id, session_id = body["order"]["id"], body["sessionId"]
    await live.act(session_id, "pay")
    event = await live.event(session_id, COMPLETED)
    await _set_reserved(live, product["id"], 0)  # selling the reservation will fail
    payload = encode(event)

    response = await live.post_event(payload, sign(payload, live.webhook_secret))

    # Not a 4xx: Stripe keeps delivering it. Kept unprocessed, so the audit sees the payment.
    assert_problem(response, 503, "SERVICE_UNAVAILABLE")
    assert await live.inbox(event["id"]) == ["error:RuntimeError"]
    assert (await live.order(buyer, order_id))["status"] == "PENDING"
    await live.expire_reservation(order_id, seconds_ago=600)
    report = await run_audit(live.db, sweeper_interval=timedelta(seconds=SWEEPER_INTERVAL))
    named = [v for v in report.violations if v.invariant == 7]
    assert [v.subject for v in named] == [f"order {order_id}"], report.as_text()
    assert "was paid" in named[0].detail

    await _set_reserved(live, product["id"], 1)  # repaired: the redelivery takes it up again
    redelivered = await live.post_event(payload, sign(payload, live.webhook_secret))

    assert redelivered.status_code == 200, redelivered.text
    assert (await live.wait_for(buyer, order_id, "COMPLETED"))["status"] == "COMPLETED"
    assert await live.inbox(event["id"]) in (["fulfilled"], ["already_settled"])
    assert await live.balance(merchant) == "12.50"
    await live.audit_ok()
