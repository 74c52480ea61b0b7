"""The fault switch: a sandbox outage reaches payflow as PaymentGatewayError and has no effect."""

from __future__ import annotations

import httpx
import pytest

from payflow.payments.errors import PaymentGatewayError
from payflow.payments.gateway import StripeGateway
from tests.sandbox.harness import API_KEY, SandboxServer, new_session


async def session_count(operator: httpx.AsyncClient, sandbox: SandboxServer) -> int:
    count: int = (await operator.get(f"{sandbox.public_base}/_sandbox")).json()["sessions"]
    return count


async def test_an_api_error_outage_fails_the_call_and_creates_nothing(
    gateway: StripeGateway, operator: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    before = await session_count(operator, sandbox)
    await operator.post("/faults", params={"mode": "error"})

    for _ in range(2):
        with pytest.raises(PaymentGatewayError) as raised:
            await new_session(gateway)
        assert raised.value.http_status == 500

    assert await session_count(operator, sandbox) == before
    await operator.delete("/faults")
    assert (await new_session(gateway)).status == "open"


async def test_a_counted_fault_clears_itself(
    gateway: StripeGateway, operator: httpx.AsyncClient
) -> None:
    armed = await operator.post("/faults", params={"mode": "error", "count": 1})
    assert armed.json()["remaining"] == 1

    with pytest.raises(PaymentGatewayError):
        await new_session(gateway)

    assert (await new_session(gateway)).status == "open"
    assert (await operator.get("/faults")).json()["mode"] is None


async def test_a_hanging_api_is_a_gateway_error_without_an_http_status(
    sandbox: SandboxServer, operator: httpx.AsyncClient
) -> None:
    await operator.post("/faults", params={"mode": "hang", "seconds": 1.5, "count": 1})
    impatient = StripeGateway(
        API_KEY, sandbox.api_base, sandbox.webhook_secret, timeout=0.3, max_network_retries=0
    )
    try:
        with pytest.raises(PaymentGatewayError) as raised:
            await new_session(impatient)
    finally:
        await impatient.aclose()

    assert raised.value.http_status is None
    assert "could not be reached" in raised.value.detail


async def test_sdk_retries_ride_out_a_brief_outage_with_one_idempotent_session(
    sandbox: SandboxServer, operator: httpx.AsyncClient
) -> None:
    before = await session_count(operator, sandbox)
    await operator.post("/faults", params={"mode": "error", "count": 1})
    patient = StripeGateway(
        API_KEY, sandbox.api_base, sandbox.webhook_secret, max_network_retries=1
    )
    try:
        session = await new_session(patient)
    finally:
        await patient.aclose()

    assert session.status == "open"
    assert await session_count(operator, sandbox) == before + 1


async def test_faults_touch_only_the_stripe_api_not_the_hosted_page(
    gateway: StripeGateway, browser: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    session = await new_session(gateway)
    await operator.post("/faults", params={"mode": "error"})

    page = await browser.get(f"/checkout/{session.id}")

    assert page.status_code == 200
