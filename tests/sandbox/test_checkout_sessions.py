"""Checkout sessions through the official SDK: create, retrieve, expire, idempotency, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe

from payflow.payments.errors import PaymentGatewayError
from payflow.payments.gateway import SdkHttpClient, StripeGateway
from payflow.sandbox.checkout import parse_new_session
from payflow.sandbox.errors import StripeApiError
from tests.sandbox.harness import (
    CANCEL_URL,
    SUCCESS_URL,
    SandboxServer,
    events_for,
    new_session,
    press,
)


async def test_created_session_is_open_unpaid_and_points_at_the_hosted_page(
    gateway: StripeGateway, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway, order_id="order-42", unit_amount=1250, quantity=2)

    assert session.id.startswith("cs_test_")
    assert session.url == f"{sandbox.public_base}/checkout/{session.id}"
    assert session.status == "open"
    assert session.payment_status == "unpaid"
    assert session.payment_intent is None
    assert session.amount_total == 2500
    assert session.currency == "USD"
    assert session.client_reference_id == "order-42"
    assert session.metadata == {"order_id": "order-42"}


async def test_session_object_has_stripes_fields_and_values(
    stripe_client: stripe.StripeClient,
) -> None:
    expires_at = int((datetime.now(UTC) + timedelta(minutes=30)).timestamp())

    session = await stripe_client.v1.checkout.sessions.create_async(
        {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 999,
                        "product_data": {"name": "Course"},
                    },
                    "quantity": 1,
                }
            ],
            "success_url": SUCCESS_URL,
            "cancel_url": CANCEL_URL,
            "client_reference_id": "order-7",
            "metadata": {"order_id": "order-7"},
            "expires_at": expires_at,
        }
    )

    assert session.object == "checkout.session"
    assert session.livemode is False
    assert session.mode == "payment"
    assert session.amount_subtotal == 999
    assert session.currency == "usd"
    assert session.expires_at == expires_at
    assert session.customer is None
    # Stripe keeps the template variable in the stored URL and fills it only when redirecting.
    assert session.success_url == SUCCESS_URL
    assert session.cancel_url == CANCEL_URL
    assert session.last_response is not None
    assert session.last_response.headers["Request-Id"].startswith("req_")


async def test_retrieve_returns_the_same_session(gateway: StripeGateway) -> None:
    created = await new_session(gateway)

    assert await gateway.retrieve_session(created.id) == created


async def test_retrieving_an_unknown_session_is_a_gateway_error_with_resource_missing(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    with pytest.raises(PaymentGatewayError) as raised:
        await gateway.retrieve_session("cs_test_nope")
    assert raised.value.http_status == 404
    assert raised.value.stripe_code == "resource_missing"

    with pytest.raises(stripe.InvalidRequestError) as sdk_error:
        await stripe_client.v1.checkout.sessions.retrieve_async("cs_test_nope")
    assert sdk_error.value.param == "session"


async def test_expire_closes_an_open_session_and_announces_it(
    gateway: StripeGateway, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway)

    expired = await gateway.expire_session(session.id)

    assert expired.status == "expired"
    assert expired.url is None
    (delivery,) = await events_for(sandbox.recorder, session.id, 1)
    event = delivery.event
    assert event["type"] == "checkout.session.expired"
    assert event["data"]["object"]["status"] == "expired"
    # Caused by an API call: Stripe names the request and its idempotency key.
    assert event["request"]["id"].startswith("req_")
    assert event["request"]["idempotency_key"]


async def test_expiring_a_session_that_is_no_longer_open_is_400_for_stripe_but_fine_for_payflow(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    session = await new_session(gateway)
    await gateway.expire_session(session.id)

    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.checkout.sessions.expire_async(session.id)
    assert raised.value.http_status == 400

    again = await gateway.expire_session(session.id)
    assert again.status == "expired"


async def test_expiring_a_paid_session_returns_it_complete(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    session = await new_session(gateway)
    await press(browser, f"/checkout/{session.id}", "pay")

    result = await gateway.expire_session(session.id)

    assert result.status == "complete"
    assert result.payment_status == "paid"


async def test_same_idempotency_key_and_params_replays_the_first_session(
    stripe_client: stripe.StripeClient,
) -> None:
    params: Any = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 500,
                    "product_data": {"name": "A"},
                },
                "quantity": 1,
            }
        ],
    }
    options: Any = {"idempotency_key": "replay-me-1"}

    first = await stripe_client.v1.checkout.sessions.create_async(params, options)
    second = await stripe_client.v1.checkout.sessions.create_async(params, options)

    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert first.last_response is not None
    assert "Idempotent-Replayed" not in first.last_response.headers


async def test_gateway_retry_with_the_same_key_gets_the_same_session(
    gateway: StripeGateway,
) -> None:
    first = await new_session(gateway, order_id="order-9", idempotency_key="order-9-checkout")
    second = await new_session(gateway, order_id="order-9", idempotency_key="order-9-checkout")

    assert second.id == first.id


async def test_same_idempotency_key_with_other_params_is_an_idempotency_error(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    await new_session(gateway, order_id="order-10", idempotency_key="order-10-checkout")

    with pytest.raises(PaymentGatewayError) as raised:
        await new_session(gateway, order_id="order-11", idempotency_key="order-10-checkout")
    assert raised.value.http_status == 400
    assert "idempotency_error" in raised.value.detail

    with pytest.raises(stripe.IdempotencyError):
        await stripe_client.v1.checkout.sessions.expire_async(
            "cs_test_other", options={"idempotency_key": "order-10-checkout"}
        )


async def test_a_request_that_failed_validation_does_not_use_up_its_key(
    gateway: StripeGateway,
) -> None:
    with pytest.raises(PaymentGatewayError):
        await new_session(gateway, quantity=0, idempotency_key="fix-and-retry")

    session = await new_session(gateway, quantity=1, idempotency_key="fix-and-retry")

    assert session.status == "open"


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"mode": None}, "mode", "parameter_missing"),
        ({"mode": "subscription"}, "mode", "parameter_invalid"),
        ({"line_items": None}, "line_items", "parameter_missing"),
        ({"line_items": [{"quantity": 1}]}, "line_items[0][price_data]", "parameter_missing"),
        ({"quantity": "two"}, "line_items[0][quantity]", "parameter_invalid_integer"),
        ({"quantity": 0}, "line_items[0][quantity]", "parameter_invalid_integer"),
        ({"unit_amount": None}, "line_items[0][price_data][unit_amount]", "parameter_missing"),
        ({"currency": None}, "line_items[0][price_data][currency]", "parameter_missing"),
        ({"currency": "dollars"}, "line_items[0][price_data][currency]", "parameter_invalid"),
        ({"name": ""}, "line_items[0][price_data][product_data][name]", "parameter_invalid_empty"),
        ({"unit_amount": 10}, "line_items", "amount_too_small"),
        ({"unit_amount": 100_000_000}, "line_items", "amount_too_large"),
        ({"success_url": "not a url"}, "success_url", "url_invalid"),
        ({"expires_at": "soon"}, "expires_at", "parameter_invalid_integer"),
        ({"expires_at": 0}, "expires_at", "parameter_invalid"),
        ({"expires_at": 10**10}, "expires_at", "parameter_invalid"),
        ({"colour": "red"}, "colour", "parameter_unknown"),
        ({"metadata": {"k" * 41: "v"}}, "metadata[" + "k" * 41 + "]", "parameter_invalid"),
    ],
)
async def test_invalid_create_params_are_400_naming_the_param(
    stripe_client: stripe.StripeClient, change: dict[str, Any], param: str, code: str
) -> None:
    item: dict[str, Any] = {
        "price_data": {
            "currency": change.pop("currency", "usd"),
            "unit_amount": change.pop("unit_amount", 1000),
            "product_data": {"name": change.pop("name", "Book")},
        },
        "quantity": change.pop("quantity", 1),
    }
    params: dict[str, Any] = {"mode": "payment", "line_items": [item], **change}

    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]

    assert raised.value.http_status == 400
    assert raised.value.param == param
    assert raised.value.code == code


async def test_parameter_errors_reach_payflow_as_gateway_errors(gateway: StripeGateway) -> None:
    with pytest.raises(PaymentGatewayError) as raised:
        await new_session(gateway, quantity=0)

    error = raised.value
    assert error.code == "PAYMENT_GATEWAY_ERROR"
    assert error.http_status == 400
    assert error.stripe_code == "parameter_invalid_integer"
    assert "line_items[0][quantity]" in error.detail


async def test_a_key_that_is_not_a_test_key_is_refused_without_leaking_it(
    sandbox: SandboxServer,
) -> None:
    gateway = StripeGateway("sk_live_verysecretvalue1234", sandbox.api_base, "whsec_x")
    try:
        with pytest.raises(PaymentGatewayError) as raised:
            await new_session(gateway)
    finally:
        await gateway.aclose()

    assert raised.value.http_status == 401
    assert "verysecret" not in raised.value.detail
    assert "sk_live" not in raised.value.detail


@pytest.mark.parametrize("key", ["sk_live_realmoney", "pk_test_publishable", "sk_test_"])
async def test_keys_other_than_secret_test_keys_get_401_in_stripes_envelope(
    sandbox: SandboxServer, key: str
) -> None:
    http = SdkHttpClient(timeout=3.0)
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.api_base}, http_client=http)
    try:
        with pytest.raises(stripe.AuthenticationError) as raised:
            await client.v1.checkout.sessions.retrieve_async("cs_test_x")
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK

    assert raised.value.http_status == 401
    body = raised.value.json_body
    assert isinstance(body, dict)
    error = body["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) >= {"type", "code", "message", "param"}


async def test_a_request_without_credentials_gets_401(sandbox: SandboxServer) -> None:
    async with httpx.AsyncClient(base_url=sandbox.api_base) as client:
        response = await client.get("/v1/checkout/sessions/cs_test_x")

    assert response.status_code == 401
    assert "did not provide an API key" in response.json()["error"]["message"]


async def test_calls_the_sandbox_does_not_serve_are_404_in_stripes_envelope(
    stripe_client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.customers.list_async()

    assert raised.value.http_status == 404
    assert raised.value.user_message is not None
    assert raised.value.user_message.startswith("Unrecognized request URL")


async def test_expand_payment_intent_returns_the_object(
    gateway: StripeGateway, stripe_client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    session = await new_session(gateway)
    await press(browser, f"/checkout/{session.id}", "pay")

    expanded = await stripe_client.v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["payment_intent"]}
    )

    intent: Any = expanded.payment_intent
    assert intent.object == "payment_intent"
    assert intent.status == "succeeded"


def _session_params(expires_at: int) -> dict[str, Any]:
    item = {"price_data": {"currency": "usd", "unit_amount": "500", "product_data": {"name": "A"}}}
    return {
        "mode": "payment",
        "line_items": [{**item, "quantity": "1"}],
        "expires_at": str(expires_at),
    }


def test_an_expiry_at_exactly_the_minimum_survives_whole_second_timestamps() -> None:
    now = 1_800_000_000
    limits = {"now": now, "min_expires_in": 60, "max_expires_in": 86400}

    assert parse_new_session(_session_params(now + 59), **limits).expires_at == now + 59
    with pytest.raises(StripeApiError) as raised:
        parse_new_session(_session_params(now + 50), **limits)
    assert raised.value.param == "expires_at"
