"""Correctly signed webhooks that Stripe would never send (issue 13, defect 6): only someone who
holds the signing secret can send them. None is a 500. A malformed envelope is a 400 and nothing
is recorded; a well-formed event whose checkout session is malformed is acknowledged, recorded as
`malformed` and acts on nothing."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.payments.live import Live, derive, encode, live_fixture, sign  # noqa: F401
from tests.support import assert_problem

COMPLETED = "checkout.session.completed"


async def _pending_paid(live: Live) -> tuple[dict[str, Any], dict[str, Any], Any]:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=2)
    await live.deliveries(False)
    body = await live.buy(buyer, product["id"])
    await live.act(body["sessionId"], "pay")
    return body, await live.event(body["sessionId"], COMPLETED), buyer


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"payment_status": None}, id="no-payment-status"),
        pytest.param({"payment_status": "maybe"}, id="unknown-payment-status"),
        pytest.param({"amount_total": "1250"}, id="string-amount"),
        pytest.param({"amount_total": True}, id="boolean-amount"),
        pytest.param({"amount_total": 2**70}, id="amount-beyond-bigint"),
        pytest.param({"amount_total": 12.5}, id="fractional-amount"),
        pytest.param({"currency": 840}, id="numeric-currency"),
        pytest.param({"currency": "\ud800sd"}, id="lone-surrogate-currency"),
        pytest.param({"payment_intent": 7}, id="numeric-payment-intent"),
        pytest.param({"id": "cs_" + "x" * 300}, id="overlong-session-id"),
    ],
)
async def test_a_signed_event_with_a_malformed_session_is_acknowledged_and_changes_nothing(
    live: Live, changes: dict[str, Any]
) -> None:
    body, completed, buyer = await _pending_paid(live)
    event = derive(completed, COMPLETED, **changes)
    if changes.get("payment_status", "") is None:
        del event["data"]["object"]["payment_status"]

    await live.deliver(event)  # asserts 200 {"received": true}

    assert await live.inbox(event["id"]) == ["malformed"]
    assert (await live.order(buyer, body["order"]["id"]))["status"] == "PENDING"
    await live.audit_ok()


def _envelope(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": COMPLETED,
        "created": int(time.time()),
        "data": {"object": {"object": "checkout.session", "id": "cs_x", "payment_status": "paid"}},
    }
    event.update(fields)
    return event


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(encode(_envelope(id="evt_" + "x" * 300)), id="overlong-event-id"),
        pytest.param(encode(_envelope(id=12345)), id="numeric-event-id"),
        pytest.param(encode(_envelope(type="checkout.\ud800")), id="surrogate-in-type"),
        pytest.param(encode(_envelope(created="yesterday")), id="string-created"),
        pytest.param(encode(_envelope(created=1e20)), id="float-created"),
        pytest.param(encode(_envelope(data=[])), id="data-not-an-object"),
        pytest.param(encode(_envelope(data={"object": "x"})), id="object-not-an-object"),
        pytest.param(b"[1, 2, 3]", id="not-an-object"),
        pytest.param(b'{"id": "evt_1", "created": 1e400}', id="created-overflows"),
    ],
)
async def test_a_signed_but_malformed_envelope_is_a_400_and_nothing_is_recorded(
    live: Live, raw: bytes
) -> None:
    before = await live.inbox_size()

    response = await live.post_event(raw, sign(raw, live.webhook_secret))

    assert_problem(response, 400, "VALIDATION_ERROR")
    assert await live.inbox_size() == before


async def test_text_a_database_cannot_hold_anywhere_in_a_signed_event_is_not_a_500(
    live: Live,
) -> None:
    body, completed, buyer = await _pending_paid(live)
    event = derive(completed, "customer.updated")
    event["data"]["object"] = {"object": "customer", "name": "\ud800", "note": "nul\u0000"}

    response = await live.post_event(encode(event), sign(encode(event), live.webhook_secret))

    assert response.status_code in (200, 400), response.text
    assert (await live.order(buyer, body["order"]["id"]))["status"] == "PENDING"
