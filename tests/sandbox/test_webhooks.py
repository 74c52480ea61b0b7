"""Webhook events: Stripe's signature, delivery off the request path, retries, re-delivery, and
the sweeper that expires sessions past their expires_at."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import stripe

from payflow.payments.errors import InvalidSignature
from payflow.payments.gateway import StripeGateway
from payflow.sandbox.webhooks import signature_header
from tests.sandbox.harness import (
    Received,
    SandboxServer,
    events_for,
    form_token,
    new_session,
    press,
)


async def _paid_event(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> Received:
    session = await new_session(gateway)
    await press(browser, f"/checkout/{session.id}", "pay")
    (delivery,) = await events_for(sandbox.recorder, session.id, 1)
    return delivery


async def test_signature_is_stripes_hmac_over_timestamp_and_raw_body(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    delivery = await _paid_event(gateway, browser, sandbox)
    header = delivery.headers["stripe-signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))

    assert abs(timestamp - time.time()) < 10
    assert header == stripe.WebhookSignature.generate_signature_header(
        delivery.body.decode(), sandbox.webhook_secret, timestamp
    )
    assert stripe.Webhook.construct_event(delivery.body, header, sandbox.webhook_secret)


async def test_gateway_turns_a_verified_delivery_into_a_typed_event(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    delivery = await _paid_event(gateway, browser, sandbox)

    event = gateway.construct_event(delivery.body, delivery.headers["stripe-signature"])

    assert event.id == delivery.event["id"]
    assert event.type == "checkout.session.completed"
    session = event.checkout_session
    assert session is not None
    assert session.payment_status == "paid"
    assert session.client_reference_id == "order-1"
    assert (session.amount_total, session.currency) == (2500, "USD")


async def test_another_secret_a_changed_byte_or_a_stale_timestamp_is_rejected(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    delivery = await _paid_event(gateway, browser, sandbox)
    body, header, secret = (
        delivery.body,
        delivery.headers["stripe-signature"],
        sandbox.webhook_secret,
    )
    changed = body.replace(b'"paid"', b'"pa1d"', 1)
    stale = signature_header(body, secret, int(time.time()) - 301)
    other = StripeGateway("sk_test_x", None, "whsec_another_secret")

    for payload, signature, verifier in [
        (body, header, other),
        (changed, header, gateway),
        (body, stale, gateway),
        (body, "", gateway),
        (body, "t=abc,v1=", gateway),
        (b"\xff" + body, header, gateway),
    ]:
        with pytest.raises(InvalidSignature) as raised:
            verifier.construct_event(payload, signature)
        assert raised.value.code == "INVALID_SIGNATURE"
    await other.aclose()

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_another_secret")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(changed, header, secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, stale, secret, tolerance=300)


async def test_delivery_never_blocks_the_request_that_caused_it(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    sandbox.recorder.delay = 1.0
    session = await new_session(gateway)
    page = f"/checkout/{session.id}"
    token = await form_token(browser, page)

    started = time.perf_counter()
    response = await press(browser, page, "pay", token=token)
    elapsed = time.perf_counter() - started

    assert response.status_code == 303
    assert elapsed < 0.5
    await events_for(sandbox.recorder, session.id, 1)


async def test_a_failed_delivery_is_retried_until_it_succeeds(
    gateway: StripeGateway,
    browser: httpx.AsyncClient,
    sandbox: SandboxServer,
    operator: httpx.AsyncClient,
) -> None:
    session = await new_session(gateway)
    sandbox.recorder.fail(session.id, 2)
    await press(browser, f"/checkout/{session.id}", "pay")

    attempts = await events_for(sandbox.recorder, session.id, 3)

    assert len({a.event["id"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1  # the same payload, re-signed each time
    event_id = attempts[0].event["id"]
    log = (await operator.get(f"/events/{event_id}")).json()["deliveries"]
    assert [(d["attempt"], d["status"]) for d in log] == [(1, 500), (2, 500), (3, 200)]


async def test_redelivery_sends_identical_copies_at_once(
    gateway: StripeGateway,
    browser: httpx.AsyncClient,
    sandbox: SandboxServer,
    operator: httpx.AsyncClient,
) -> None:
    first = await _paid_event(gateway, browser, sandbox)
    event_id = first.event["id"]

    response = await operator.post(f"/events/{event_id}/deliver", params={"times": 5})

    assert response.status_code == 200
    assert [d["status"] for d in response.json()["data"]] == [200] * 5
    copies = sandbox.recorder.for_object(first.object_id)
    assert len(copies) == 6
    assert {c.body for c in copies} == {first.body}
    for copy in copies:
        assert gateway.construct_event(copy.body, copy.headers["stripe-signature"]).id == event_id


async def test_redelivering_an_unknown_event_is_404(operator: httpx.AsyncClient) -> None:
    response = await operator.post("/events/evt_unknown/deliver")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


async def test_events_are_listed_in_the_order_they_happened(
    gateway: StripeGateway,
    browser: httpx.AsyncClient,
    sandbox: SandboxServer,
    operator: httpx.AsyncClient,
) -> None:
    session = await new_session(gateway)
    await press(browser, f"/checkout/{session.id}", "decline")
    await events_for(sandbox.recorder, session.id, 2)

    listed = await operator.get("/events", params={"object_id": session.id})

    assert [e["type"] for e in listed.json()["data"]] == [
        "checkout.session.completed",
        "checkout.session.async_payment_failed",
    ]


async def test_disabled_webhooks_record_events_without_sending_them(
    gateway: StripeGateway,
    browser: httpx.AsyncClient,
    sandbox: SandboxServer,
    operator: httpx.AsyncClient,
) -> None:
    await operator.post("/webhooks", params={"enabled": "false"})
    session = await new_session(gateway)
    await press(browser, f"/checkout/{session.id}", "pay")

    listed = (await operator.get("/events", params={"object_id": session.id})).json()

    (event,) = listed["data"]
    assert event["deliveries"][0]["status"] is None
    assert sandbox.recorder.for_object(session.id) == []


async def test_the_sweeper_expires_sessions_past_expires_at_and_announces_it(
    gateway: StripeGateway, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway, expires_in=1.5)

    (delivery,) = await events_for(sandbox.recorder, session.id, 1, within=5)

    event = delivery.event
    assert event["type"] == "checkout.session.expired"
    assert event["request"] == {"id": None, "idempotency_key": None}
    assert event["data"]["object"]["status"] == "expired"
    assert time.time() >= event["data"]["object"]["expires_at"]
    assert (await gateway.retrieve_session(session.id)).status == "expired"


async def test_a_session_past_its_expires_at_cannot_be_paid(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway, expires_in=1.2)
    page = f"/checkout/{session.id}"
    token = await form_token(browser, page)  # the page was opened in time
    await asyncio.sleep(1.3)

    response = await press(browser, page, "pay", token=token)

    assert response.status_code == 409
    assert "has expired" in response.text
    (delivery,) = await events_for(sandbox.recorder, session.id, 1)
    assert delivery.event["type"] == "checkout.session.expired"
