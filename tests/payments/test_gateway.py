"""The gateway against real Stripe test mode: opt-in, with STRIPE_TEST_SECRET_KEY set.

The same calls the sandbox tests make, so a difference between the sandbox and Stripe shows up
here. Skipped (with the reason) when no test key is configured, as on machines without internet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from payflow.payments.gateway import StripeGateway

STRIPE_TEST_SECRET_KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")

real_stripe = pytest.mark.skipif(
    not STRIPE_TEST_SECRET_KEY.startswith("sk_test_"),
    reason="set STRIPE_TEST_SECRET_KEY=sk_test_... to run against real Stripe test mode",
)


@pytest.fixture
async def stripe_gateway() -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway(STRIPE_TEST_SECRET_KEY, None, "whsec_unused_by_this_test")
    yield gateway
    await gateway.aclose()


@real_stripe
async def test_real_stripe_creates_and_expires_a_checkout_session(
    stripe_gateway: StripeGateway,
) -> None:
    order_id = f"payflow-test-{uuid.uuid4()}"

    created = await stripe_gateway.create_checkout_session(
        order_id=order_id,
        product_name="payflow gateway test",
        unit_amount=1250,
        quantity=2,
        currency="USD",
        # Real Stripe wants expires_at 30 min..24 h ahead.
        expires_at=datetime.now(UTC) + timedelta(minutes=31),
        success_url="https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://example.com/cancel",
        idempotency_key=f"{order_id}-checkout",
    )

    assert created.id.startswith("cs_test_")
    assert created.url is not None
    assert created.url.startswith("https://")
    assert (created.status, created.payment_status) == ("open", "unpaid")
    assert (created.amount_total, created.currency) == (2500, "USD")
    assert created.client_reference_id == order_id
    assert created.metadata == {"order_id": order_id}
    assert await stripe_gateway.retrieve_session(created.id) == created

    expired = await stripe_gateway.expire_session(created.id)
    assert expired.status == "expired"
    # Expiring again is a 400 at Stripe; the gateway reports the session as it is.
    assert (await stripe_gateway.expire_session(created.id)).status == "expired"


async def test_a_naive_expiry_time_is_refused_before_any_call() -> None:
    gateway = StripeGateway("sk_test_unused", "http://127.0.0.1:9", "whsec_unused")
    try:
        with pytest.raises(ValueError, match="timezone-aware"):
            await gateway.create_checkout_session(
                order_id="o",
                product_name="p",
                unit_amount=100,
                quantity=1,
                currency="USD",
                expires_at=datetime.now(UTC).replace(tzinfo=None),
                success_url="https://example.com/s",
                cancel_url="https://example.com/c",
                idempotency_key="k",
            )
    finally:
        await gateway.aclose()
