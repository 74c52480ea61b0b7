"""A running payments sandbox for tests: real uvicorn on a real port, in a background thread.

The sandbox is mounted at /sandbox of a small host app, as payflow mounts it, next to a webhook
receiver at /hooks that records every delivery and can be told to fail or to be slow. Tests talk
to it only as payflow and a browser would: through the official SDK (StripeGateway) and plain
HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from payflow.payments.gateway import CheckoutSession, StripeGateway
from payflow.sandbox import SandboxConfig, create_sandbox_app
from payflow.sandbox.hosted import CSRF_FIELD

HOST = "127.0.0.1"
API_KEY = "sk_test_payflow_sandbox_tests"  # the one key this sandbox accepts
SHOP = "http://shop.test"  # where its sessions may send browsers (payflow's PUBLIC_URL)
T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def object_id(self) -> str:
        return str(self.event["data"]["object"]["id"])


class WebhookRecorder:
    """The webhook endpoint: records each delivery; answers 500 to the next deliveries about an
    object given to `fail()` (other tests' late deliveries cannot use them up), then 200."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._failures: dict[str, int] = {}
        self.delay = 0.0

    def fail(self, object_id: str, times: int) -> None:
        with self._lock:
            self._failures[object_id] = times

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        received = Received(dict(request.headers), body, time.time())
        with self._lock:
            self._received.append(received)
            left = self._failures.get(received.object_id, 0)
            failing = left > 0
            if failing:
                self._failures[received.object_id] = left - 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=500 if failing else 200)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def for_object(self, object_id: str) -> list[Received]:
        return [r for r in self.received() if r.object_id == object_id]

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self.delay = 0.0


@dataclass(frozen=True)
class SandboxServer:
    origin: str  # http://127.0.0.1:PORT
    config: SandboxConfig
    app: FastAPI
    recorder: WebhookRecorder

    @property
    def api_base(self) -> str:
        """STRIPE_API_BASE: the SDK appends /v1/... to it."""
        return self.config.public_base

    @property
    def public_base(self) -> str:
        return self.config.public_base

    @property
    def webhook_secret(self) -> str:
        return self.config.webhook_secret

    @property
    def api_key(self) -> str:
        return self.config.api_key


def _host_app(sandbox_app: FastAPI, recorder: WebhookRecorder) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Starlette does not run a mounted app's lifespan; the host must, as payflow will.
        async with sandbox_app.router.lifespan_context(sandbox_app):
            yield

    return Starlette(
        routes=[
            Route("/hooks", recorder.endpoint, methods=["POST"]),
            Mount("/sandbox", app=sandbox_app),
        ],
        lifespan=lifespan,
    )


@contextmanager
def run_sandbox(**overrides: Any) -> Iterator[SandboxServer]:
    """Serve a sandbox (fast timings for tests unless overridden) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    origin = f"http://{HOST}:{sock.getsockname()[1]}"
    settings: dict[str, Any] = {
        "webhook_url": f"{origin}/hooks",
        "public_base": f"{origin}/sandbox",
        "api_key": API_KEY,
        "redirect_base": SHOP,
        "min_expires_in": 1,
        "sweep_interval": 0.1,
        "async_payment_delay": 0.3,
        "delivery_timeout": 3.0,
        "retry_delays": (0.1, 0.2, 0.3),
        **overrides,
    }
    config = SandboxConfig(**settings)
    sandbox_app = create_sandbox_app(config)
    recorder = WebhookRecorder()
    server = uvicorn.Server(
        uvicorn.Config(
            _host_app(sandbox_app, recorder),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        yield SandboxServer(origin, config, sandbox_app, recorder)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def eventually(probe: Callable[[], T | None], within: float = 5.0) -> T:
    """The first truthy value `probe` returns, polling until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


async def events_for(
    recorder: WebhookRecorder, object_id: str, count: int, within: float = 5.0
) -> list[Received]:
    """The first `count` deliveries about one object, once that many have arrived."""

    def probe() -> list[Received] | None:
        received = recorder.for_object(object_id)
        return received[:count] if len(received) >= count else None

    return await eventually(probe, within)


SUCCESS_URL = f"{SHOP}/payments/success?session_id={{CHECKOUT_SESSION_ID}}"
CANCEL_URL = f"{SHOP}/payments/cancel?order_id=order-1"


def operator_headers(api_key: str) -> dict[str, str]:
    """What the control API (/_sandbox) needs: the sandbox's own key."""
    return {"Authorization": f"Bearer {api_key}"}


async def form_token(browser: httpx.AsyncClient, page_url: str) -> str:
    """The token in the forms of a hosted checkout page, as a browser showing the page has it."""
    page = await browser.get(page_url)
    found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', page.text)
    assert found is not None, f"no form on the page ({page.status_code})"
    return found.group(1)


async def press(
    browser: httpx.AsyncClient, page_url: str, button: str, *, token: str | None = None
) -> httpx.Response:
    """Press a button of the hosted checkout page at `page_url` as a browser does: submit its
    form, token included, from the page's own origin. `token` is one read from the page
    earlier (a page left open); by default the page is loaded now."""
    if token is None:
        token = await form_token(browser, page_url)
    return await browser.post(
        f"{page_url}/{button}",
        data={CSRF_FIELD: token},
        headers={"Sec-Fetch-Site": "same-origin"},
    )


async def new_session(
    gateway: StripeGateway,
    *,
    order_id: str = "order-1",
    unit_amount: int = 1250,
    quantity: int = 2,
    expires_in: float = 600,
    idempotency_key: str | None = None,
    product_name: str = "E-book: Payments in Practice",
) -> CheckoutSession:
    return await gateway.create_checkout_session(
        order_id=order_id,
        product_name=product_name,
        unit_amount=unit_amount,
        quantity=quantity,
        currency="USD",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        success_url=SUCCESS_URL,
        cancel_url=CANCEL_URL,
        idempotency_key=idempotency_key or f"checkout-{uuid.uuid4()}",
    )
