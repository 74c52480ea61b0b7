"""Fixtures: one sandbox server for the whole package, a fresh gateway and HTTP clients per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stripe

from payflow.payments.gateway import SdkHttpClient, StripeGateway
from tests.sandbox.harness import API_KEY, SandboxServer, operator_headers, run_sandbox


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    with run_sandbox() as server:
        yield server


@pytest.fixture(scope="session")
def control(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """The control API's operator (the sandbox's key), for the fixtures' set-up."""
    headers = operator_headers(sandbox.api_key)
    with httpx.Client(base_url=sandbox.public_base, headers=headers) as client:
        yield client


@pytest.fixture(autouse=True)
def _clean_switches(sandbox: SandboxServer, control: httpx.Client) -> Iterator[None]:
    """Faults and webhook switches are global to the server: every test starts and ends clean."""

    def reset() -> None:
        control.delete("/_sandbox/faults").raise_for_status()
        control.post("/_sandbox/webhooks", params={"enabled": "true"}).raise_for_status()
        sandbox.recorder.reset()

    reset()
    yield
    reset()


@pytest.fixture
async def gateway(sandbox: SandboxServer) -> AsyncIterator[StripeGateway]:
    gw = StripeGateway(
        API_KEY, sandbox.api_base, sandbox.webhook_secret, timeout=3.0, max_network_retries=0
    )
    yield gw
    await gw.aclose()


@pytest.fixture
async def stripe_client(sandbox: SandboxServer) -> AsyncIterator[stripe.StripeClient]:
    """The bare SDK client, for checking the wire details the gateway hides (error classes)."""
    http = SdkHttpClient(timeout=3.0)
    yield stripe.StripeClient(
        API_KEY, base_addresses={"api": sandbox.api_base}, http_client=http, max_network_retries=0
    )
    await http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK


@pytest.fixture
async def browser(sandbox: SandboxServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client on the sandbox's public base that does not follow redirects, and
    holds no key: what a buyer's browser is."""
    async with httpx.AsyncClient(base_url=sandbox.public_base, follow_redirects=False) as client:
        yield client


@pytest.fixture
async def operator(sandbox: SandboxServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the control API (/_sandbox) with the sandbox's key."""
    async with httpx.AsyncClient(
        base_url=f"{sandbox.public_base}/_sandbox", headers=operator_headers(sandbox.api_key)
    ) as client:
        yield client
