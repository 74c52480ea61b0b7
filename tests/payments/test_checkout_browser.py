"""A buyer in headless Chromium on the sandbox's hosted checkout page: Pay, Cancel, Decline.

Debian's Chromium, driven by Playwright (never a browser build of Playwright's own), against a
real payflow on the embedded default — and on PostgreSQL + Redis when configured. The browser
follows the hosted page's 303s back to payflow's /payments/success and /payments/cancel pages,
and the sandbox delivers its signed events to payflow over TCP, as Stripe would.
Without Chromium the tests are skipped, unless PAYFLOW_REQUIRE_BROWSER=1 makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.payments.live import Live, live_fixture  # noqa: F401
from tests.support import Account

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/payflow-checkout.png")  # noqa: S108 - a fixed path for a human to open
SCREENSHOTS = Path("/tmp")  # noqa: S108 - payflow-<page>.png, for a human to open


async def _screenshot(page: Page, name: str) -> None:
    """Evidence of what a person sees, not a golden image: a real PNG of the whole page."""
    png = await page.screenshot(path=str(SCREENSHOTS / f"payflow-{name}.png"), full_page=True)
    assert png.startswith(b"\x89PNG")
    assert len(png) > 5_000


PAGE_TIMEOUT_MS = 15_000


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("PAYFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing, and PAYFLOW_REQUIRE_BROWSER=1 requires it")
        pytest.skip(f"{CHROMIUM} is missing (set PAYFLOW_REQUIRE_BROWSER=1 to fail instead)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 900, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _open_checkout(
    live: Live, page: Page, *, units: int = 3
) -> tuple[Account, Account, dict[str, object], dict[str, object]]:
    """A merchant's product and a buyer's PENDING gateway order, its hosted page open in the
    browser: (merchant, buyer, product, the POST /orders body)."""
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=units)
    body = await live.buy(buyer, str(product["id"]))
    response = await page.goto(str(body["checkoutUrl"]))
    assert response is not None
    assert response.status == 200
    assert await page.inner_text("#status") == "Pay 12.50 USD"
    assert await page.inner_text("#total") == "12.50 USD"
    assert await live.stock(str(product["id"])) == (units - 1, 1)
    return merchant, buyer, product, body


async def _shows(page: Page, status: str, within: float = 10.0) -> None:
    """Reload payflow's page until it shows the order in `status` (the webhook is asynchronous)."""
    deadline = time.monotonic() + within
    while True:
        shown = await page.inner_text("#order-status")
        if shown == status:
            return
        assert time.monotonic() < deadline, f"the page still shows {shown}, not {status}"
        await asyncio.sleep(0.2)
        await page.reload()


async def test_the_buyer_pays_on_the_hosted_page_and_lands_on_a_completed_order(
    live: Live, page: Page
) -> None:
    merchant, buyer, product, body = await _open_checkout(live, page)
    order_id, session_id = str(body["order"]["id"]), str(body["sessionId"])  # type: ignore[index]
    png = await page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert png.startswith(b"\x89PNG")
    assert len(png) > 5_000

    await page.click("#pay")
    await page.wait_for_url(f"{live.base}/api/v1/payments/success?session_id={session_id}")
    await _shows(page, "COMPLETED")
    assert await page.inner_text("#order-words") == "Paid: your order is complete"
    await _screenshot(page, "success")

    assert "complete" in (await page.inner_text("h1")).lower()
    assert (await live.order(buyer, order_id))["status"] == "COMPLETED"
    earnings = [row for row in await live.ledger(merchant) if row["referenceId"] == order_id]
    assert [(row["type"], row["amount"]) for row in earnings] == [("EARNING", "12.50")]
    assert await live.balance(merchant) == "12.50"
    assert await live.stock(str(product["id"])) == (2, 0)
    # Back on the hosted page, the session is paid: no second payment can start.
    await page.goto(str(body["checkoutUrl"]))
    assert await page.inner_text("#status") == "Payment complete"
    assert await page.locator("#pay").count() == 0
    await live.audit_ok()


async def test_the_buyer_cancels_on_the_hosted_page_and_the_stock_comes_back(
    live: Live, page: Page
) -> None:
    merchant, buyer, product, body = await _open_checkout(live, page)
    order_id, session_id = str(body["order"]["id"]), str(body["sessionId"])  # type: ignore[index]

    await page.click("#cancel")
    await page.wait_for_url(f"{live.base}/api/v1/payments/cancel?**")

    assert await page.inner_text("#order-status") == "CANCELLED"
    assert "cancelled" in (await page.inner_text("h1")).lower()
    assert await page.inner_text("#order-words") == "Cancelled: nothing was charged"
    await _screenshot(page, "cancel")
    assert (await live.order(buyer, order_id))["status"] == "CANCELLED"
    assert await live.stock(str(product["id"])) == (3, 0)
    assert await live.available(str(product["id"])) == 3
    assert (await live.session(session_id))["status"] == "expired"
    assert await live.balance(merchant) == "0.00"
    await live.audit_ok()


async def test_a_declined_payment_fails_the_order_and_the_stock_comes_back(
    live: Live, page: Page
) -> None:
    merchant, buyer, product, body = await _open_checkout(live, page)
    order_id, session_id = str(body["order"]["id"]), str(body["sessionId"])  # type: ignore[index]

    await page.click("#decline")
    # An async method that fails later: Checkout returns the buyer to the success URL at once.
    await page.wait_for_url(f"{live.base}/api/v1/payments/success?session_id={session_id}")
    # The failure is reported about a second later; a slow machine may already show it.
    assert await page.inner_text("#order-status") in ("PENDING", "PAYMENT_PROCESSING", "FAILED")
    await _shows(page, "FAILED")
    assert await page.inner_text("#order-words") == "Your payment was declined: nothing was charged"
    await _screenshot(page, "declined")

    order = await live.order(buyer, order_id)
    assert order["status"] == "FAILED"
    assert order["failureReason"].startswith("PAYMENT_FAILED")
    assert await live.stock(str(product["id"])) == (3, 0)
    assert await live.available(str(product["id"])) == 3
    assert await live.balance(merchant) == "0.00"
    await live.audit_ok()


async def test_the_landing_page_and_the_sandbox_page_render(live: Live, page: Page) -> None:
    await page.goto(f"{live.base}/")
    assert await page.inner_text("h1") == "payflow"
    assert await page.locator('a[href="/docs"]').count() == 1
    await _screenshot(page, "landing")
    await page.goto(f"{live.base}/sandbox/")
    assert await page.inner_text("#status") == "payflow payments sandbox"
    await _screenshot(page, "sandbox")
