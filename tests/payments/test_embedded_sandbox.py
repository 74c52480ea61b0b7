"""The payments sandbox payflow serves itself (no STRIPE_SECRET_KEY) answers only to payflow: its
API and control API take only the key payflow was given at start, its sessions redirect only
under PUBLIC_URL, and its hosted page's buttons work only from the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe

from payflow.payments.gateway import SdkHttpClient
from tests.payments.live import Live, live_fixture  # noqa: F401


def _session_params(success_url: str, cancel_url: str) -> Any:  # the SDK's TypedDict
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
        "success_url": success_url,
        "cancel_url": cancel_url,
    }


@pytest.fixture
async def sdk_http() -> AsyncIterator[SdkHttpClient]:
    http = SdkHttpClient(timeout=5.0)
    yield http
    await http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK


def _client(live: Live, key: str, http: SdkHttpClient) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": f"{live.base}/sandbox"}, http_client=http
    )


async def test_another_test_key_is_refused_with_stripes_401(
    live: Live, sdk_http: SdkHttpClient
) -> None:
    stranger = _client(live, "sk_test_payflow_sandbox", sdk_http)  # the key it once accepted
    shop = f"{live.base}/api/v1/payments"

    with pytest.raises(stripe.AuthenticationError) as raised:
        await stranger.v1.checkout.sessions.create_async(
            _session_params(f"{shop}/success", f"{shop}/cancel")
        )

    assert raised.value.http_status == 401
    body = raised.value.json_body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    assert live.sandbox.store.sessions == {}


@pytest.mark.parametrize("param", ["success_url", "cancel_url"])
async def test_redirects_away_from_public_url_are_a_400(
    live: Live, sdk_http: SdkHttpClient, param: str
) -> None:
    config = live.context.sandbox
    assert config is not None
    client = _client(live, config.api_key, sdk_http)  # even with payflow's own key
    shop = f"{live.base}/api/v1/payments"
    urls = {"success_url": f"{shop}/success", "cancel_url": f"{shop}/cancel"}
    urls[param] = "https://evil.test/login"

    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.checkout.sessions.create_async(_session_params(**urls))

    assert raised.value.http_status == 400
    assert raised.value.param == param
    assert live.sandbox.store.sessions == {}


async def test_the_control_api_needs_payflows_key(live: Live) -> None:
    async with httpx.AsyncClient(base_url=f"{live.base}/sandbox/_sandbox") as anonymous:
        switched = await anonymous.post("/webhooks", params={"enabled": "false"})
        faults = await anonymous.post("/faults", params={"mode": "error"})

    assert switched.status_code == 401
    assert switched.json()["error"]["type"] == "invalid_request_error"
    assert faults.status_code == 401
    shown = await live.control.get("/webhooks")
    assert shown.json()["enabled"] is True
    assert live.sandbox.faults.describe()["mode"] is None


async def test_a_forged_pay_on_the_hosted_page_pays_nothing(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=2)
    body = await live.buy(buyer, product["id"])
    order_id, session_id = body["order"]["id"], body["sessionId"]

    forged = await live.api.post(f"{body['checkoutUrl']}/pay")
    cancel = await live.api.post(f"{body['checkoutUrl']}/cancel")

    assert forged.status_code == 403
    assert cancel.status_code == 403
    assert "location" not in cancel.headers  # the cancel URL (and its token) is not revealed
    assert (await live.session(session_id))["payment_status"] == "unpaid"
    assert (await live.order(buyer, order_id))["status"] == "PENDING"
    assert await live.stock(product["id"]) == (1, 1)
    await live.audit_ok()
