"""Refunds of a paid checkout: full, partial, idempotent, and Stripe's refusals."""

from __future__ import annotations

import httpx
import pytest

from payflow.payments.errors import PaymentGatewayError
from payflow.payments.gateway import StripeGateway
from tests.sandbox.harness import new_session, press


async def _paid_intent(
    gateway: StripeGateway, browser: httpx.AsyncClient, action: str = "pay"
) -> str:
    session = await new_session(gateway, unit_amount=1000, quantity=3)
    await press(browser, f"/checkout/{session.id}", action)
    intent = (await gateway.retrieve_session(session.id)).payment_intent
    assert intent is not None
    return intent


async def test_a_full_refund_returns_the_whole_amount(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    intent = await _paid_intent(gateway, browser)

    refund = await gateway.refund(intent, 3000, idempotency_key=f"refund-{intent}")

    assert refund.id.startswith("re_")
    assert refund.status == "succeeded"
    assert refund.amount == 3000


async def test_refunding_again_is_charge_already_refunded(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    intent = await _paid_intent(gateway, browser)
    await gateway.refund(intent, 3000, idempotency_key=f"refund-{intent}")

    with pytest.raises(PaymentGatewayError) as raised:
        await gateway.refund(intent, 3000, idempotency_key=f"refund-again-{intent}")

    assert raised.value.http_status == 400
    assert raised.value.stripe_code == "charge_already_refunded"


async def test_refunding_more_than_is_left_is_amount_too_large(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    intent = await _paid_intent(gateway, browser)
    await gateway.refund(intent, 1000, idempotency_key=f"part-{intent}")

    with pytest.raises(PaymentGatewayError) as raised:
        await gateway.refund(intent, 2001, idempotency_key=f"rest-{intent}")

    assert raised.value.stripe_code == "amount_too_large"
    assert (await gateway.refund(intent, 2000, idempotency_key=f"rest2-{intent}")).amount == 2000


async def test_a_retried_refund_with_the_same_key_refunds_once(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    intent = await _paid_intent(gateway, browser)

    first = await gateway.refund(intent, 3000, idempotency_key=f"order-refund-{intent}")
    second = await gateway.refund(intent, 3000, idempotency_key=f"order-refund-{intent}")

    assert second == first


async def test_a_payment_still_processing_cannot_be_refunded(
    gateway: StripeGateway, browser: httpx.AsyncClient
) -> None:
    intent = await _paid_intent(gateway, browser, action="pay-later")

    with pytest.raises(PaymentGatewayError) as raised:
        await gateway.refund(intent, 3000, idempotency_key=f"early-{intent}")

    assert raised.value.http_status == 400


async def test_refunding_an_unknown_payment_is_resource_missing(gateway: StripeGateway) -> None:
    with pytest.raises(PaymentGatewayError) as raised:
        await gateway.refund("pi_unknown", 100, idempotency_key="refund-unknown")

    assert raised.value.http_status == 404
    assert raised.value.stripe_code == "resource_missing"
