"""POST /webhooks/stripe (docs/api.md, Orders): signed, recorded once, acted on through the state machine.

The sandbox's own deliveries are switched off where a test needs to decide what payflow receives:
the buyer still pays at the sandbox (a real payment intent that can be refunded), and the test
delivers the resulting events itself, signed exactly as Stripe signs them with the deployment's
webhook secret — repeated, concurrent, out of order, forged or altered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.payments.live import Live, derive, encode, live_fixture, sign  # noqa: F401
from tests.support import Account, assert_problem, deposit

COMPLETED = "checkout.session.completed"
EXPIRED = "checkout.session.expired"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"


async def _paid_at_the_sandbox(
    live: Live, *, units: int = 5, quantity: int = 1, price: str = "12.50"
) -> tuple[Account, Account, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A PENDING gateway order whose buyer has paid at the sandbox, the event not delivered yet:
    (merchant, buyer, product, order, the checkout.session.completed event)."""
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price=price, units=units)
    await live.deliveries(False)
    body = await live.buy(buyer, product["id"], quantity=quantity)
    await live.act(body["sessionId"], "pay")
    event = await live.event(body["sessionId"], COMPLETED)
    assert event["data"]["object"]["payment_status"] == "paid"
    assert (await live.order(buyer, body["order"]["id"]))["status"] == "PENDING"
    return merchant, buyer, product, body["order"], event


async def _earnings(live: Live, merchant: Account, order_id: str) -> list[dict[str, Any]]:
    return [row for row in await live.ledger(merchant) if row["referenceId"] == order_id]


async def test_one_event_delivered_ten_times_at_once_and_every_other_event_credit_once(
    live: Live,
) -> None:
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(
        live, units=5, quantity=2
    )
    body = encode(completed)
    signature = sign(body, live.webhook_secret)

    responses = await asyncio.gather(*(live.post_event(body, signature) for _ in range(10)))

    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert all(r.json() == {"received": True} for r in responses)
    assert (await live.order(buyer, order["id"]))["status"] == "COMPLETED"
    assert await live.inbox(completed["id"]) == ["fulfilled"]

    # Then everything else that may still come, in an order that makes no sense.
    late = [
        derive(completed, EXPIRED, status="expired", url=None),
        derive(completed, ASYNC_FAILED),
        derive(completed, COMPLETED),  # the same payment, announced under another event id
        derive(completed, ASYNC_SUCCEEDED),
    ]
    for event in late:
        await live.deliver(event)
    await asyncio.gather(*(live.deliver(event) for event in late))  # and all of them again

    assert (await live.order(buyer, order["id"]))["status"] == "COMPLETED"
    assert [(r["type"], r["amount"]) for r in await _earnings(live, merchant, order["id"])] == [
        ("EARNING", "25.00")
    ]
    assert await live.balance(merchant) == "25.00"
    assert await live.ledger_rows(order["id"]) == [(merchant.id, "EARNING")]
    assert await live.stock(product["id"]) == (3, 0)  # two units sold, once
    assert await live.inbox_size() == 1 + len(late)
    for event in late:
        assert len(await live.inbox(event["id"])) == 1
    await live.audit_ok()


async def test_the_same_payment_under_many_event_ids_at_once_credits_once(live: Live) -> None:
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(live, units=2)
    announcements = [
        completed,
        *(derive(completed, COMPLETED) for _ in range(4)),
        *(derive(completed, ASYNC_SUCCEEDED) for _ in range(4)),
        derive(completed, EXPIRED, status="expired"),
    ]

    await asyncio.gather(*(live.deliver(event) for event in announcements))

    assert (await live.order(buyer, order["id"]))["status"] == "COMPLETED"
    assert await live.ledger_rows(order["id"]) == [(merchant.id, "EARNING")]
    assert await live.balance(merchant) == "12.50"
    assert await live.stock(product["id"]) == (1, 0)
    assert await live.inbox_size() == len(announcements)
    await live.audit_ok()


async def test_the_sandbox_redelivering_its_event_ten_times_at_once_credits_once(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=2)
    body = await live.buy(buyer, product["id"])
    await live.act(body["sessionId"], "pay")
    order = await live.wait_for(buyer, body["order"]["id"], "COMPLETED")
    event = await live.event(body["sessionId"], COMPLETED)

    redelivered = await live.control.post(f"/events/{event['id']}/deliver", params={"times": 10})

    assert redelivered.status_code == 200, redelivered.text
    assert [d["status"] for d in redelivered.json()["data"]] == [200] * 10
    assert len(await _earnings(live, merchant, order["id"])) == 1
    assert await live.balance(merchant) == "12.50"
    assert await live.stock(product["id"]) == (1, 0)
    assert await live.inbox(event["id"]) == ["fulfilled"]
    await live.audit_ok()


async def test_forged_altered_stale_or_unsigned_deliveries_are_400_and_change_nothing(
    live: Live,
) -> None:
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(live, units=3)
    secret = live.webhook_secret
    body = encode(completed)
    now = int(time.time())
    position = body.index(b'"amount_total": ') + len(b'"amount_total": ')
    altered = body[:position] + b"9" + body[position + 1 :]  # one byte: 1250 becomes 9250
    assert len(altered) == len(body)
    assert altered != body
    _, _, digest = sign(body, secret, now).partition(",v1=")
    attempts = {
        "a signature made with another secret": (body, sign(body, "whsec_" + "x" * 32, now)),
        "one changed byte in the body": (altered, sign(body, secret, now)),
        "a stale timestamp (301 s)": (body, sign(body, secret, now - 301)),
        "a timestamp moved after signing": (body, f"t={now + 1},v1={digest}"),
        "no header at all": (body, None),
        "an empty header": (body, ""),
        "a header without a v1 signature": (body, f"t={now},v0={digest}"),
        "a garbage header": (body, "not a signature"),
    }

    for what, (payload, signature) in attempts.items():
        response = await live.post_event(payload, signature)
        problem = assert_problem(response, 400, "INVALID_SIGNATURE")
        assert "received" not in problem, what

    assert await live.inbox_size() == 0
    assert (await live.order(buyer, order["id"]))["status"] == "PENDING"
    assert await live.stock(product["id"]) == (2, 1)
    assert await live.balance(merchant) == "0.00"
    assert await live.ledger(merchant) == []

    # The event itself was genuine: signed properly (within the 300 s tolerance) it takes effect.
    accepted = await live.post_event(body, sign(body, secret, now - 240))
    assert accepted.status_code == 200, accepted.text
    assert (await live.order(buyer, order["id"]))["status"] == "COMPLETED"
    assert await live.balance(merchant) == "12.50"
    await live.audit_ok()


async def test_unknown_events_and_events_for_no_order_are_acknowledged_and_ignored(
    live: Live,
) -> None:
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(live, units=3)
    customer: dict[str, Any] = {
        "id": f"evt_test_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": completed["api_version"],
        "created": int(time.time()),
        "data": {"object": {"id": "cus_test_1", "object": "customer", "email": None}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.created",
    }
    stranger_order = str(uuid.uuid4())
    ignored = [
        customer,
        derive(completed, "checkout.session.async_payment_unknown_kind"),
        derive(completed, "payment_intent.succeeded"),
        # A known type about a session of no order of this deployment.
        derive(
            completed,
            COMPLETED,
            id="cs_test_of_someone_else",
            client_reference_id=stranger_order,
            metadata={"order_id": stranger_order},
        ),
        # A known type naming this order, but for another session than the order's.
        derive(completed, COMPLETED, id="cs_test_not_this_order"),
    ]

    for event in ignored:
        response = await live.deliver(event)
        assert response.json() == {"received": True}

    assert (await live.order(buyer, order["id"]))["status"] == "PENDING"
    assert await live.stock(product["id"]) == (2, 1)
    assert await live.balance(merchant) == "0.00"
    await live.audit_ok()


@pytest.mark.parametrize(
    "changes",
    [{"amount_total": 1000, "amount_subtotal": 1000}, {"currency": "eur"}],
    ids=["amount", "currency"],
)
async def test_a_payment_that_does_not_match_the_order_is_refunded_and_the_order_fails(
    live: Live, changes: dict[str, Any]
) -> None:
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(live, units=3)
    intent = completed["data"]["object"]["payment_intent"]
    paid = changes.get("amount_total", 1250)
    assert await live.available(product["id"]) == 2  # cached now: the change must show

    await live.deliver(derive(completed, COMPLETED, **changes))

    failed = await live.order(buyer, order["id"])
    assert failed["status"] == "FAILED"
    assert failed["failureReason"].startswith("AMOUNT_MISMATCH")
    assert await live.stock(product["id"]) == (3, 0)  # the reservation is released
    assert await live.available(product["id"]) == 3
    assert await live.balance(merchant) == "0.00"
    assert await live.ledger_rows(order["id"]) == []
    [outbox] = await live.refund_rows(order["id"])
    assert (outbox["status"], outbox["amount"], outbox["payment_intent_id"]) == (
        "SUCCEEDED",
        paid,
        intent,
    )
    assert [r.amount for r in live.sandbox_refunds(intent)] == [paid]
    await live.audit_ok()


# Released by an `expired` event that overtook the payment's. (The sweeper cannot release a
# reservation whose checkout was paid: it asks the gateway first, see
# test_a_checkout_paid_in_time_whose_event_is_late_keeps_its_units.)
@pytest.mark.parametrize("released_by", ["expired_event"])
async def test_a_payment_after_the_reservation_was_released_takes_the_stock_again(
    live: Live, released_by: str
) -> None:
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(live, units=1)
    await _release(live, buyer, order["id"], completed, released_by)
    assert await live.stock(product["id"]) == (1, 0)
    assert await live.available(product["id"]) == 1

    await live.deliver(completed)

    done = await live.order(buyer, order["id"])
    assert done["status"] == "COMPLETED"
    assert await live.stock(product["id"]) == (0, 0)
    assert await live.available(product["id"]) == 0
    assert await live.ledger_rows(order["id"]) == [(merchant.id, "EARNING")]
    assert await live.balance(merchant) == "12.50"
    assert await live.refund_rows(order["id"]) == []
    await live.audit_ok()


# Released by an `expired` event that overtook the payment's. (The sweeper cannot release a
# reservation whose checkout was paid: it asks the gateway first, see
# test_a_checkout_paid_in_time_whose_event_is_late_keeps_its_units.)
@pytest.mark.parametrize("released_by", ["expired_event"])
async def test_a_payment_after_the_reservation_was_released_and_the_stock_sold_is_refunded(
    live: Live, released_by: str
) -> None:
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(live, units=1)
    intent = completed["data"]["object"]["payment_intent"]
    await _release(live, buyer, order["id"], completed, released_by)
    # Meanwhile somebody else buys the last unit from their wallet.
    other = await live.register()
    await deposit(live.api, other, "12.50")
    sold = await live.api.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=other.headers,
    )
    assert sold.status_code == 201, sold.text
    assert await live.stock(product["id"]) == (0, 0)

    await live.deliver(completed)

    refunded = await live.order(buyer, order["id"])
    assert refunded["status"] == "REFUNDED"
    assert refunded["failureReason"].startswith("OUT_OF_STOCK")
    assert await live.stock(product["id"]) == (0, 0)
    assert await live.ledger_rows(order["id"]) == []  # the merchant was never credited for it
    assert await live.balance(merchant) == "12.50"  # only the wallet sale
    [outbox] = await live.refund_rows(order["id"])
    assert (outbox["status"], outbox["amount"]) == ("SUCCEEDED", 1250)
    assert [r.amount for r in live.sandbox_refunds(intent)] == [1250]

    # The same payment announced again changes nothing and refunds nothing twice.
    await live.deliver(derive(completed, COMPLETED))
    await live.deliver(completed)
    assert (await live.order(buyer, order["id"]))["status"] == "REFUNDED"
    assert len(live.sandbox_refunds(intent)) == 1
    await live.audit_ok()


async def _release(
    live: Live, buyer: Account, order_id: str, completed: dict[str, Any], released_by: str
) -> None:
    """End the order's reservation before its payment is heard of: by a checkout.session.expired
    event that overtook the completed one."""
    assert released_by == "expired_event"
    await live.deliver(derive(completed, EXPIRED, status="expired", payment_status="unpaid"))
    order = await live.order(buyer, order_id)
    assert order["status"] == "CANCELLED"
    assert order["failureReason"].startswith("EXPIRED")


@pytest.mark.parametrize(
    ("action", "result_type", "final"),
    [("pay-later", ASYNC_SUCCEEDED, "COMPLETED"), ("decline", ASYNC_FAILED, "FAILED")],
)
async def test_an_async_payment_keeps_its_reservation_until_its_result_arrives(
    live: Live, action: str, result_type: str, final: str
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=3)
    await live.deliveries(False)
    body = await live.buy(buyer, product["id"])
    order_id, session_id = body["order"]["id"], body["sessionId"]
    await live.act(session_id, action)
    completed = await live.event(session_id, COMPLETED)
    assert completed["data"]["object"]["payment_status"] == "unpaid"

    await live.deliver(completed)

    assert (await live.order(buyer, order_id))["status"] == "PAYMENT_PROCESSING"
    # Past its checkout TTL, a payment under way keeps its units: the sweeper leaves it alone.
    await live.expire_reservation(order_id)
    for _ in range(3):
        await live.sweep()
    assert (await live.order(buyer, order_id))["status"] == "PAYMENT_PROCESSING"
    assert await live.stock(product["id"]) == (2, 1)
    assert await live.available(product["id"]) == 2

    result = await _wait_for_event(live, session_id, result_type)
    await live.deliver(result)
    await live.deliver(derive(completed, EXPIRED, status="expired"))  # too late to matter

    assert (await live.order(buyer, order_id))["status"] == final
    if final == "COMPLETED":
        assert await live.stock(product["id"]) == (2, 0)
        assert await live.ledger_rows(order_id) == [(merchant.id, "EARNING")]
    else:
        assert await live.stock(product["id"]) == (3, 0)
        assert await live.available(product["id"]) == 3
        assert await live.ledger_rows(order_id) == []
    await live.audit_ok()


async def _wait_for_event(live: Live, session_id: str, event_type: str) -> dict[str, Any]:
    """The sandbox reports an async payment's result after a delay (about a second)."""
    deadline = time.monotonic() + 10
    while True:
        found = await live.events(session_id, event_type)
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {event_type} for {session_id}"
        await asyncio.sleep(0.1)


async def test_a_checkout_paid_in_time_whose_event_is_late_keeps_its_units(live: Live) -> None:
    """The buyer paid before the checkout expired; the event is late (payflow was unreachable,
    Stripe retries for days). The session did not expire — it completed — so the sweeper must
    not release the reservation and let the last unit be sold to somebody else."""
    merchant, buyer, product, order, completed = await _paid_at_the_sandbox(live, units=1)
    session_id = completed["data"]["object"]["id"]
    assert (await live.session(session_id))["status"] == "complete"

    await live.expire_reservation(order["id"])  # the checkout's TTL has run out since
    for _ in range(3):
        await live.sweep()

    swept = await live.order(buyer, order["id"])
    assert swept["status"] != "CANCELLED", swept["failureReason"]
    assert await live.available(product["id"]) == 0
    other = await live.register()
    await deposit(live.api, other, "12.50")
    rival = await live.api.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=other.headers,
    )
    assert_problem(rival, 409, "OUT_OF_STOCK")

    await live.deliver(completed)

    assert (await live.order(buyer, order["id"]))["status"] == "COMPLETED"
    assert await live.ledger_rows(order["id"]) == [(merchant.id, "EARNING")]
    assert await live.refund_rows(order["id"]) == []
    await live.audit_ok()
