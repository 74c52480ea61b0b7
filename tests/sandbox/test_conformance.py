"""The sandbox's objects carry only fields that the official SDK's classes declare.

So code written against the sandbox reads real Stripe objects the same way, and a field the
sandbox invented is caught here rather than in production.
"""

from __future__ import annotations

import httpx
import stripe

from payflow.payments.gateway import StripeGateway
from tests.sandbox.harness import SandboxServer, events_for, new_session, press


def declared_fields(cls: type) -> set[str]:
    fields: set[str] = set()
    for klass in cls.__mro__:
        fields.update(vars(klass).get("__annotations__", {}))
    return fields


async def _paid_session(gateway: StripeGateway, browser: httpx.AsyncClient) -> str:
    session = await new_session(gateway)
    await press(browser, f"/checkout/{session.id}", "pay")
    return session.id


async def test_checkout_session_fields_are_declared_by_the_sdk(
    gateway: StripeGateway, browser: httpx.AsyncClient, stripe_client: stripe.StripeClient
) -> None:
    session_id = await _paid_session(gateway, browser)

    session = await stripe_client.v1.checkout.sessions.retrieve_async(session_id)

    body = session.to_dict()  # every field the sandbox sent, as the SDK received it
    assert set(body) <= declared_fields(stripe.checkout.Session)
    assert set(body) >= {
        "id", "object", "amount_subtotal", "amount_total", "currency", "client_reference_id",
        "created", "expires_at", "livemode", "metadata", "mode", "payment_intent",
        "payment_status", "status", "success_url", "cancel_url", "url", "customer",
    }  # fmt: skip


async def test_payment_intent_fields_are_declared_by_the_sdk(
    gateway: StripeGateway, browser: httpx.AsyncClient, stripe_client: stripe.StripeClient
) -> None:
    session_id = await _paid_session(gateway, browser)
    intent_id = (await gateway.retrieve_session(session_id)).payment_intent
    assert intent_id is not None

    intent = await stripe_client.v1.payment_intents.retrieve_async(intent_id)

    body = intent.to_dict()
    assert set(body) <= declared_fields(stripe.PaymentIntent)
    assert set(body) >= {"id", "object", "amount", "amount_received", "currency", "status"}
    assert set(body) >= {"metadata", "latest_charge"}


async def test_refund_fields_are_declared_by_the_sdk(
    gateway: StripeGateway, browser: httpx.AsyncClient, stripe_client: stripe.StripeClient
) -> None:
    session_id = await _paid_session(gateway, browser)
    intent_id = (await gateway.retrieve_session(session_id)).payment_intent
    assert intent_id is not None

    refund = await stripe_client.v1.refunds.create_async(
        {"payment_intent": intent_id, "amount": 100, "reason": "requested_by_customer"}
    )

    body = refund.to_dict()
    assert set(body) <= declared_fields(stripe.Refund)
    assert set(body) >= {"id", "object", "amount", "currency", "payment_intent", "status"}


async def test_event_fields_are_declared_by_the_sdk(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session_id = await _paid_session(gateway, browser)

    (delivery,) = await events_for(sandbox.recorder, session_id, 1)

    event = delivery.event
    assert set(event) == {
        "id", "object", "api_version", "created", "data", "livemode", "pending_webhooks",
        "request", "type",
    }  # fmt: skip
    assert set(event) <= declared_fields(stripe.Event)
    assert set(event["request"]) <= declared_fields(stripe.Event.Request)
    assert set(event["data"]) <= declared_fields(stripe.Event.Data)
    assert event["api_version"] == stripe.api_version
    assert set(event["data"]["object"]) <= declared_fields(stripe.checkout.Session)


def test_the_sdk_classes_declare_fields_at_all() -> None:
    """Guards the guard: an SDK that stopped annotating would make the checks above vacuous."""
    assert {"id", "payment_status", "url"} <= declared_fields(stripe.checkout.Session)
