"""Who may use the sandbox: only its own API key (Stripe API and control API alike), redirects
only under the shop's URL, and the hosted page's buttons only from the page itself."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from payflow.payments.errors import PaymentGatewayError
from payflow.payments.gateway import SdkHttpClient, StripeGateway
from payflow.sandbox.checkout import is_under
from tests.sandbox.harness import (
    CANCEL_URL,
    SHOP,
    SUCCESS_URL,
    SandboxServer,
    form_token,
    new_session,
    operator_headers,
    press,
)

# Well-formed secret test keys, none of them the sandbox's own.
OTHER_KEYS = ["sk_test_payflow_sandbox", "sk_test_" + "0" * 48]


@pytest.mark.parametrize("key", OTHER_KEYS)
async def test_a_test_key_other_than_the_sandboxs_own_gets_401_in_stripes_envelope(
    sandbox: SandboxServer, key: str
) -> None:
    http = SdkHttpClient(timeout=3.0)
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.api_base}, http_client=http)
    try:
        with pytest.raises(stripe.AuthenticationError) as raised:
            await client.v1.checkout.sessions.create_async(_session_params())
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK

    assert raised.value.http_status == 401
    body = raised.value.json_body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("Invalid API Key provided")
    assert key[12:-4] not in body["error"]["message"]  # masked, as Stripe masks it


async def test_a_wrong_key_through_payflows_gateway_creates_nothing(
    sandbox: SandboxServer, operator: httpx.AsyncClient
) -> None:
    before = (await operator.get(f"{sandbox.public_base}/_sandbox")).json()["sessions"]
    stranger = StripeGateway(OTHER_KEYS[1], sandbox.api_base, sandbox.webhook_secret)
    try:
        with pytest.raises(PaymentGatewayError) as raised:
            await new_session(stranger)
    finally:
        await stranger.aclose()

    assert raised.value.http_status == 401
    assert (await operator.get(f"{sandbox.public_base}/_sandbox")).json()["sessions"] == before


@pytest.mark.parametrize("param", ["success_url", "cancel_url"])
@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test/phish",
        "http://shop.test.evil.test/",
        "http://shop.test@evil.test/",
        "http://shop.test:8443/payments",
        "https://shop.test/payments",  # another scheme is another origin
        "http://shop.test\\@evil.test/",
        "http://evil.test/?next=http://shop.test/",
    ],
)
async def test_redirect_urls_outside_the_shop_are_a_400_naming_the_param(
    stripe_client: stripe.StripeClient, param: str, url: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.checkout.sessions.create_async(_session_params(**{param: url}))

    assert raised.value.http_status == 400
    assert raised.value.param == param
    body = raised.value.json_body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    assert SHOP in body["error"]["message"]


@pytest.mark.parametrize(
    ("url", "under"),
    [
        ("https://pay.example/shop", True),
        ("https://pay.example/shop/api/v1/payments/success?session_id=x", True),
        ("https://PAY.example/shop/x", True),
        ("https://pay.example/shopping", False),
        ("https://pay.example/", False),
        ("https://pay.example", False),
        ("http://pay.example/shop/x", False),
        ("https://pay.example:444/shop/x", False),
        ("https://user@pay.example/shop/x", False),
        ("https://pay.example/shop/x y", False),
        ("https://pay.example/shop/\u00e9", False),
    ],
)
def test_is_under_keeps_to_the_base_origin_and_path(url: str, under: bool) -> None:
    assert is_under(url, "https://pay.example/shop/") is under


async def test_the_shops_own_urls_are_accepted(stripe_client: stripe.StripeClient) -> None:
    session = await stripe_client.v1.checkout.sessions.create_async(_session_params())

    assert (session.success_url, session.cancel_url) == (SUCCESS_URL, CANCEL_URL)


@pytest.mark.parametrize("headers", [{}, operator_headers(OTHER_KEYS[0])])
async def test_the_control_api_without_the_sandboxs_key_is_a_401_and_changes_nothing(
    sandbox: SandboxServer,
    gateway: StripeGateway,
    operator: httpx.AsyncClient,
    headers: dict[str, str],
) -> None:
    session = await new_session(gateway)
    control = f"{sandbox.public_base}/_sandbox"
    async with httpx.AsyncClient(base_url=control, headers=headers) as anonymous:
        attempts = [
            await anonymous.post("/webhooks", params={"enabled": "false"}),
            await anonymous.post("/faults", params={"mode": "error"}),
            await anonymous.post(f"/sessions/{session.id}/pay"),
            await anonymous.get(f"/sessions/{session.id}"),
            await anonymous.get("/events"),
        ]

    for response in attempts:
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert (await operator.get("/webhooks")).json()["enabled"] is True
    assert (await operator.get("/faults")).json()["mode"] is None
    assert (await gateway.retrieve_session(session.id)).status == "open"


@pytest.mark.parametrize("button", ["pay", "decline", "pay-later", "cancel"])
async def test_a_button_without_the_pages_token_is_refused_and_nothing_happens(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer, button: str
) -> None:
    session = await new_session(gateway)
    other = await new_session(gateway)
    checkout = f"/checkout/{session.id}"
    foreign_token = await form_token(browser, f"/checkout/{other.id}")

    forged = [
        await browser.post(f"{checkout}/{button}"),
        await browser.post(f"{checkout}/{button}", data={"csrf_token": ""}),
        await browser.post(f"{checkout}/{button}", data={"csrf_token": "0" * 64}),
        await press(browser, checkout, button, token=foreign_token),  # another session's
    ]

    for response in forged:
        assert response.status_code == 403, response.text
        assert "location" not in response.headers
        assert "Nothing was paid" in response.text
    current = await gateway.retrieve_session(session.id)
    assert (current.status, current.payment_status, current.payment_intent) == (
        "open",
        "unpaid",
        None,
    )
    assert sandbox.recorder.for_object(session.id) == []


async def test_a_cross_site_post_is_refused_even_with_the_token(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    session = await new_session(gateway)
    checkout = f"/checkout/{session.id}"
    token = await form_token(browser, checkout)

    for site in ("cross-site", "same-site"):
        response = await browser.post(
            f"{checkout}/pay", data={"csrf_token": token}, headers={"Sec-Fetch-Site": site}
        )
        assert response.status_code == 403, site

    assert (await gateway.retrieve_session(session.id)).payment_status == "unpaid"
    paid = await press(browser, checkout, "pay", token=token)
    assert paid.status_code == 303
    assert (await gateway.retrieve_session(session.id)).payment_status == "paid"


def _session_params(**urls: str) -> Any:
    return {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 1250,
                    "product_data": {"name": "Book"},
                },
                "quantity": 1,
            }
        ],
        "success_url": urls.get("success_url", SUCCESS_URL),
        "cancel_url": urls.get("cancel_url", CANCEL_URL),
    }
