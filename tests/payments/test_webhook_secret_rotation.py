"""Rotating the webhook signing secret: STRIPE_WEBHOOK_SECRET holds the new and the old secret,
comma-separated, while Stripe switches; a delivery signed with either is accepted, anything else
is refused, and once the old secret is removed its signatures are refused again."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI

from payflow.app import create_app
from payflow.config import Settings
from payflow.payments.errors import InvalidSignature
from payflow.payments.gateway import StripeGateway
from tests.payments.live import sign

NEW, OLD, STRANGER = "whsec_new_" + "n" * 24, "whsec_old_" + "o" * 24, "whsec_x_" + "x" * 24


def _event() -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "customer.created",  # a type payflow ignores: acknowledged, nothing changes
            "created": int(time.time()),
            "data": {"object": {"object": "customer", "id": "cus_1"}},
        }
    ).encode()


async def test_during_a_rotation_both_secrets_verify_and_no_other() -> None:
    gateway = StripeGateway("sk_test_unused", "http://127.0.0.1:9", f"{NEW}, {OLD}")
    try:
        for secret in (NEW, OLD):
            payload = _event()
            assert gateway.construct_event(payload, sign(payload, secret)).type == (
                "customer.created"
            )
        payload = _event()
        with pytest.raises(InvalidSignature):
            gateway.construct_event(payload, sign(payload, STRANGER))
    finally:
        await gateway.aclose()


async def test_after_the_rotation_the_old_secret_is_refused() -> None:
    gateway = StripeGateway("sk_test_unused", "http://127.0.0.1:9", NEW)
    try:
        payload = _event()
        with pytest.raises(InvalidSignature):
            gateway.construct_event(payload, sign(payload, OLD))
    finally:
        await gateway.aclose()


async def test_the_webhook_route_accepts_either_secret_during_a_rotation(
    settings: Settings,
) -> None:
    app: FastAPI = create_app(settings.model_copy(update={"stripe_webhook_secret": f"{NEW},{OLD}"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://payflow.test") as c:
            for secret, status in ((NEW, 200), (OLD, 200), (STRANGER, 400)):
                payload = _event()
                response = await c.post(
                    "/api/v1/webhooks/stripe",
                    content=payload,
                    headers={
                        "Stripe-Signature": sign(payload, secret),
                        "Content-Type": "application/json",
                    },
                )
                assert response.status_code == status, (secret, response.text)
