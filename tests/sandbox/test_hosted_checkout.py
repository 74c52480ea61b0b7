"""The hosted checkout page and what each button does: redirects, session state, events."""

from __future__ import annotations

import re

import httpx
import stripe

from payflow.payments.gateway import StripeGateway
from tests.sandbox.harness import (
    CANCEL_URL,
    SandboxServer,
    events_for,
    form_token,
    new_session,
    press,
)


def _success_for(session_id: str) -> str:
    return f"http://shop.test/payments/success?session_id={session_id}"


async def test_page_shows_the_product_quantity_amount_and_the_buttons(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    session = await new_session(
        gateway, product_name="Guide <2nd ed.>", unit_amount=1250, quantity=3
    )
    assert session.url is not None

    response = await browser.get(session.url)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Guide &lt;2nd ed.&gt;" in page
    assert "&times; 3" in page
    assert "37.50 USD" in page
    for button in ('id="pay"', 'id="decline"', 'id="cancel"', 'id="pay-later"'):
        assert button in page


async def test_page_is_self_contained_and_scriptless_under_a_strict_csp(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    session = await new_session(gateway)

    response = await browser.get(f"/checkout/{session.id}")

    page = response.text.lower()
    assert "<script" not in page
    assert " on" + "click" not in page
    assert "http" not in page.split("<body>")[1]  # no external assets or absolute actions
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # falls back to default-src 'none'
    assert "form-action 'self' http://shop.test" in csp


async def test_pay_completes_the_session_paid_and_redirects_to_success_url(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway, order_id="order-pay")

    response = await press(browser, f"/checkout/{session.id}", "pay")

    assert response.status_code == 303
    assert response.headers["location"] == _success_for(session.id)
    paid = await gateway.retrieve_session(session.id)
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    assert paid.payment_intent is not None
    intent = await gateway.retrieve_payment_intent(paid.payment_intent)
    assert intent.status == "succeeded"
    assert intent.amount == intent.amount_received == paid.amount_total
    assert intent.metadata == {"order_id": "order-pay"}
    (delivery,) = await events_for(sandbox.recorder, session.id, 1)
    event = delivery.event
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["payment_status"] == "paid"
    assert event["data"]["object"]["payment_intent"] == paid.payment_intent
    assert event["request"] == {"id": None, "idempotency_key": None}


async def test_decline_completes_unpaid_then_reports_the_async_failure(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway)

    response = await press(browser, f"/checkout/{session.id}", "decline")

    assert response.status_code == 303
    assert response.headers["location"] == _success_for(session.id)
    completed, failed = await events_for(sandbox.recorder, session.id, 2)
    assert completed.event["type"] == "checkout.session.completed"
    assert completed.event["data"]["object"]["payment_status"] == "unpaid"
    assert failed.event["type"] == "checkout.session.async_payment_failed"
    assert failed.event["data"]["object"]["payment_status"] == "unpaid"
    current = await gateway.retrieve_session(session.id)
    assert (current.status, current.payment_status) == ("complete", "unpaid")
    assert current.payment_intent is not None
    intent = await gateway.retrieve_payment_intent(current.payment_intent)
    assert intent.status == "requires_payment_method"
    assert intent.amount_received == 0


async def test_pay_later_completes_unpaid_then_reports_the_async_success(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway)

    response = await press(browser, f"/checkout/{session.id}", "pay-later")

    assert response.status_code == 303
    processing = await gateway.retrieve_session(session.id)
    assert processing.payment_status == "unpaid"
    completed, succeeded = await events_for(sandbox.recorder, session.id, 2)
    assert completed.event["type"] == "checkout.session.completed"
    assert completed.event["data"]["object"]["payment_status"] == "unpaid"
    assert succeeded.event["type"] == "checkout.session.async_payment_succeeded"
    assert succeeded.event["data"]["object"]["payment_status"] == "paid"
    assert succeeded.at - completed.at >= 0.2  # the async method takes its time
    paid = await gateway.retrieve_session(session.id)
    assert paid.payment_status == "paid"


async def test_cancel_redirects_to_cancel_url_and_leaves_the_session_open(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway)

    response = await press(browser, f"/checkout/{session.id}", "cancel")

    assert response.status_code == 303
    assert response.headers["location"] == CANCEL_URL
    assert (await gateway.retrieve_session(session.id)).status == "open"
    assert sandbox.recorder.for_object(session.id) == []


async def test_a_completed_session_shows_its_outcome_without_buttons(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    session = await new_session(gateway)
    checkout = f"/checkout/{session.id}"
    token = await form_token(browser, checkout)
    await press(browser, checkout, "pay", token=token)

    page = await browser.get(checkout)
    again = await press(browser, checkout, "pay", token=token)  # from the page still open

    assert page.status_code == 200
    assert "Payment complete" in page.text
    assert "<button" not in page.text
    assert again.status_code == 409
    assert "<button" not in again.text


async def test_an_expired_session_says_so_without_buttons(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    session = await new_session(gateway)
    checkout = f"/checkout/{session.id}"
    token = await form_token(browser, checkout)
    await gateway.expire_session(session.id)

    page = await browser.get(checkout)
    pay = await press(browser, checkout, "pay", token=token)  # from the page still open

    assert "has expired" in page.text
    assert "<button" not in page.text
    assert pay.status_code == 409
    assert (await gateway.retrieve_session(session.id)).status == "expired"


async def test_an_unknown_session_page_is_404(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/checkout/cs_test_unknown")

    assert response.status_code == 404
    assert "not found" in response.text


async def test_the_buttons_work_by_following_the_forms_relative_actions(
    gateway: StripeGateway, sandbox: SandboxServer
) -> None:
    """What a browser does: resolve the form's action against the page URL, POST its fields."""
    session = await new_session(gateway)
    assert session.url is not None
    async with httpx.AsyncClient(follow_redirects=False) as client:
        page = await client.get(session.url)
        form = page.text.split('<form method="post" action="')[1].split("</form>")[0]
        action = form.split('"')[0]
        name, value = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', form)[0]
        response = await client.post(httpx.URL(session.url).join(action), data={name: value})

    assert response.status_code == 303
    assert (await gateway.retrieve_session(session.id)).payment_status == "paid"


async def test_control_api_pays_without_a_browser(
    gateway: StripeGateway, operator: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway)

    response = await operator.post(f"/sessions/{session.id}/pay")

    assert response.status_code == 200
    body = response.json()
    assert body["session"]["payment_status"] == "paid"
    assert body["redirect_url"] == _success_for(session.id)
    (delivery,) = await events_for(sandbox.recorder, session.id, 1)
    assert delivery.event["type"] == "checkout.session.completed"


async def test_control_api_can_expire_silently_as_if_the_event_were_lost(
    gateway: StripeGateway, operator: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway)

    response = await operator.post(f"/sessions/{session.id}/expire?notify=false")

    assert response.json()["status"] == "expired"
    listed = await operator.get("/events", params={"object_id": session.id})
    events = listed.json()["data"]
    assert [e["type"] for e in events] == ["checkout.session.expired"]
    assert events[0]["deliveries"] == []
    assert sandbox.recorder.for_object(session.id) == []


async def test_webhook_payload_is_accepted_by_the_sdk_as_a_checkout_session(
    gateway: StripeGateway, browser: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    session = await new_session(gateway)
    await press(browser, f"/checkout/{session.id}", "pay")

    (delivery,) = await events_for(sandbox.recorder, session.id, 1)
    event = stripe.Webhook.construct_event(
        delivery.body, delivery.headers["stripe-signature"], sandbox.webhook_secret
    )

    assert event.type == "checkout.session.completed"
    assert isinstance(event.data.object, stripe.checkout.Session)
    assert event.data.object.client_reference_id == "order-1"
