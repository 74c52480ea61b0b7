"""The pages people see: the landing page, the favicon, the sandbox's own explanation, and the
pages a buyer returns to from Checkout — the order in words, its product and amount, reloading
itself (a bounded number of times) while the payment settles, and saying plainly when a payment
was declined. API clients asking for JSON get what they always got."""

from __future__ import annotations

import re

import httpx

from payflow.orders.checkout_pages import MAX_REFRESHES
from tests.payments.live import Live, live_fixture  # noqa: F401

HTML = {"Accept": "text/html"}
REFRESH = re.compile(r'<meta http-equiv="refresh" content="\d+;url=([^"]+)">')


async def test_the_landing_page_the_favicon_and_the_sandbox_explain_themselves(
    live: Live,
) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as root:
        landing = await root.get("/", headers=HTML)
        assert landing.status_code == 200
        assert landing.headers["content-type"].startswith("text/html")
        assert 'href="/docs"' in landing.text
        assert 'href="/sandbox/"' in landing.text
        assert '<link rel="icon" href="/favicon.ico"' in landing.text
        icon = await root.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/svg+xml"
        assert icon.content.startswith(b"<svg")
        about = await root.get("/sandbox/", headers=HTML)
        assert about.status_code == 200
        assert "stand-in for Stripe" in about.text
        assert "never in production" in about.text


async def test_the_success_page_reloads_while_the_payment_settles_then_shows_it_paid(
    live: Live,
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=3)
    body = await live.buy(buyer, product["id"], quantity=2)
    session_id = body["sessionId"]

    as_json = await live.api.get("/payments/success", params={"session_id": session_id})
    assert set(as_json.json()) == {"orderId", "status", "amount", "currency", "message"}

    pending = await live.api.get(
        "/payments/success", params={"session_id": session_id}, headers=HTML
    )
    assert pending.status_code == 200
    assert "We are confirming your payment" in pending.text
    assert "25.00 USD" in pending.text
    assert f"{product['name']} &times; 2" in pending.text
    assert re.search(r'id="order-status">PENDING<', pending.text)
    [target] = REFRESH.findall(pending.text)
    assert target.startswith("/api/v1/payments/success?")
    assert "refresh=1" in target

    last = await live.api.get(
        "/payments/success",
        params={"session_id": session_id, "refresh": MAX_REFRESHES},
        headers=HTML,
    )
    assert REFRESH.findall(last.text) == []  # bounded: the page stops reloading itself
    assert "reload this page" in last.text

    await live.act(session_id, "pay")
    await live.wait_for(buyer, body["order"]["id"], "COMPLETED")
    paid = await live.api.get("/payments/success", params={"session_id": session_id}, headers=HTML)
    assert "Paid: your order is complete" in paid.text
    assert REFRESH.findall(paid.text) == []


async def test_a_declined_payment_is_shown_as_declined(live: Live) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="9.00", units=1)
    body = await live.buy(buyer, product["id"])
    await live.act(body["sessionId"], "decline")
    await live.wait_for(buyer, body["order"]["id"], "FAILED")
    page = await live.api.get(
        "/payments/success", params={"session_id": body["sessionId"]}, headers=HTML
    )
    assert "Your payment was declined: nothing was charged" in page.text
    assert REFRESH.findall(page.text) == []
