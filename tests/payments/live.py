"""A running payflow with its embedded payments sandbox, for the gateway purchase tests.

payflow is served by a real uvicorn on a real port (in a thread of the test process), so that the
sandbox can deliver its webhooks over TCP and a browser can follow Checkout's redirects. The test
talks to it only over HTTP — the API, the sandbox's control API, and signed webhook deliveries —
and reads the database behind its back (its own engine) to check stock, the inbox and the refund
outbox, and to run the audit (docs/api.md, Invariants).

    async def test_x(live: Live) -> None:
        merchant, buyer = await live.register("MERCHANT"), await live.register()
        ...

The fixture is parametrized like every other test through `settings`: SQLite always, PostgreSQL
and Redis too when TEST_DATABASE_URL / TEST_REDIS_URL are set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.routing import Mount

from payflow.audit.service import run_audit
from payflow.config import Settings
from payflow.core.db import Database
from payflow.core.tables import utcnow
from payflow.orders.models import orders
from payflow.orders.sweeper import SweepReport, sweep_once
from payflow.payments.gateway import StripeGateway
from payflow.payments.models import gateway_refunds, webhook_events
from payflow.products.models import products
from payflow.sandbox.objects import Refund
from payflow.sandbox.runtime import Sandbox
from payflow.wallets.models import wallet_transactions, wallets
from payflow.wiring import AppContext
from tests.db_helpers import with_conn
from tests.live_app import free_port, serve_app_in_thread
from tests.live_server import CLIENT_LIMITS
from tests.sandbox.harness import operator_headers
from tests.support import Account, create_product, ledger, register

SWEEPER_INTERVAL = 0.5
WAIT_SECONDS = 10.0
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "REFUNDED"})


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header exactly as Stripe computes it: HMAC-SHA256 over "<t>.<body>"."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def encode(event: dict[str, Any]) -> bytes:
    """An event body as Stripe sends it (pretty-printed JSON)."""
    return json.dumps(event, indent=2).encode()


def derive(event: dict[str, Any], event_type: str, **changes: Any) -> dict[str, Any]:
    """Another event about the same checkout session: a new event id, another type, the
    session object with `changes` applied."""
    data_object = {**event["data"]["object"], **changes}
    return {
        **event,
        "id": f"evt_test_{uuid.uuid4().hex[:24]}",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": data_object},
    }


@dataclass
class Live:
    base: str
    settings: Settings
    app: FastAPI
    api: httpx.AsyncClient  # {base}/api/v1
    control: httpx.AsyncClient  # {base}/sandbox/_sandbox, with the sandbox's key
    db: Database  # the test's own engine on payflow's database

    # -- the deployment ----------------------------------------------------------------------

    @property
    def context(self) -> AppContext:
        return cast(AppContext, self.app.state.context)

    @property
    def webhook_secret(self) -> str:
        config = self.context.sandbox
        assert config is not None, "this deployment does not serve the sandbox"
        return config.webhook_secret

    @property
    def sandbox(self) -> Sandbox:
        for route in self.app.routes:
            if isinstance(route, Mount) and route.name == "payments-sandbox":
                return cast(Sandbox, cast(FastAPI, route.app).state.sandbox)
        raise AssertionError("the payments sandbox is not mounted")

    def sandbox_refunds(self, payment_intent: str) -> list[Refund]:
        return [
            r
            for r in list(self.sandbox.store.refunds.values())
            if r.payment_intent == payment_intent
        ]

    # -- users, products, orders -------------------------------------------------------------

    async def register(self, role: str = "USER") -> Account:
        return await register(self.api, role=role)

    async def product(
        self, merchant: Account, *, price: str = "12.50", units: int = 5
    ) -> dict[str, Any]:
        return await create_product(self.api, merchant, price=price, units=units)

    async def checkout(
        self, buyer: Account, product_id: str, *, quantity: int = 1, key: str | None = None
    ) -> httpx.Response:
        headers = dict(buyer.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.api.post(
            "/orders",
            json={"productId": product_id, "paymentMethod": "GATEWAY", "quantity": quantity},
            headers=headers,
        )

    async def buy(self, buyer: Account, product_id: str, *, quantity: int = 1) -> dict[str, Any]:
        """A gateway order: 201 with the PENDING order, its checkout URL and session id."""
        response = await self.checkout(buyer, product_id, quantity=quantity)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def order(self, account: Account, order_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/orders/{order_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_for(
        self, account: Account, order_id: str, status: str, within: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        """Poll the order until it has `status`; fail if it settles elsewhere or time runs out."""
        deadline = time.monotonic() + within
        while True:
            order = await self.order(account, order_id)
            if order["status"] == status:
                return order
            if time.monotonic() > deadline:
                raise AssertionError(f"order {order_id} is {order['status']}, expected {status}")
            await asyncio.sleep(0.05)

    async def available(self, product_id: str) -> int:
        """availableUnits as the API shows it (GET /products/{id}, cache included)."""
        response = await self.api.get(f"/products/{product_id}")
        assert response.status_code == 200, response.text
        units: int = response.json()["availableUnits"]
        return units

    async def balance(self, account: Account) -> str:
        response = await self.api.get("/wallet", headers=account.headers)
        assert response.status_code == 200, response.text
        value: str = response.json()["balance"]
        return value

    async def ledger(self, account: Account) -> list[dict[str, Any]]:
        return await ledger(self.api, account)

    # -- the sandbox's control API -----------------------------------------------------------

    async def act(self, session_id: str, action: str = "pay") -> dict[str, Any]:
        """The buyer's choice on the hosted page, without a browser (pay, decline, pay-later)."""
        response = await self.control.post(f"/sessions/{session_id}/{action}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def session(self, session_id: str) -> dict[str, Any]:
        response = await self.control.get(f"/sessions/{session_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def deliveries(self, enabled: bool) -> None:
        """Switch the sandbox's webhook deliveries on or off (events are still created)."""
        response = await self.control.post("/webhooks", params={"enabled": str(enabled).lower()})
        assert response.status_code == 200, response.text

    async def events(self, session_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's events about a session, full Stripe event objects, oldest first."""
        params = {"object_id": session_id, **({"type": event_type} if event_type else {})}
        response = await self.control.get("/events", params=params)
        assert response.status_code == 200, response.text
        found = []
        for summary in response.json()["data"]:
            detail = await self.control.get(f"/events/{summary['id']}")
            assert detail.status_code == 200, detail.text
            found.append(detail.json()["event"])
        return found

    async def event(self, session_id: str, event_type: str) -> dict[str, Any]:
        matching = await self.events(session_id, event_type)
        assert len(matching) == 1, matching
        return matching[0]

    async def wait_for_delivery(self, event_id: str, within: float = WAIT_SECONDS) -> None:
        """Until the sandbox has delivered the event (a 2xx from payflow)."""
        deadline = time.monotonic() + within
        while True:
            response = await self.control.get(f"/events/{event_id}")
            assert response.status_code == 200, response.text
            if any(d["ok"] for d in response.json()["deliveries"]):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event_id} was not delivered: {response.text}")
            await asyncio.sleep(0.05)

    # -- webhook deliveries made by the test -------------------------------------------------

    async def post_event(
        self, body: bytes, signature: str | None, *, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return await (client or self.api).post("/webhooks/stripe", content=body, headers=headers)

    async def deliver(self, event: dict[str, Any]) -> httpx.Response:
        """One correctly signed delivery of the event; asserts payflow acknowledged it."""
        body = encode(event)
        response = await self.post_event(body, sign(body, self.webhook_secret))
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True}
        return response

    # -- behind payflow's back ---------------------------------------------------------------

    async def stock(self, product_id: str) -> tuple[int, int]:
        """(available_units, reserved_units) as stored."""
        row = await self._one(
            sa.select(products.c.available_units, products.c.reserved_units).where(
                products.c.id == uuid.UUID(product_id)
            )
        )
        return int(row[0]), int(row[1])

    async def inbox(self, event_id: str) -> list[str | None]:
        """The outcomes recorded for this provider event id (one row at most, if all is well)."""
        rows = await self._all(
            sa.select(webhook_events.c.outcome).where(
                webhook_events.c.provider_event_id == event_id
            )
        )
        return [row[0] for row in rows]

    async def inbox_size(self) -> int:
        return int((await self._one(sa.select(sa.func.count()).select_from(webhook_events)))[0])

    async def refund_rows(self, order_id: str) -> list[dict[str, Any]]:
        rows = await self._all(
            sa.select(gateway_refunds).where(gateway_refunds.c.order_id == uuid.UUID(order_id))
        )
        return [dict(row._mapping) for row in rows]

    async def refund_settled(self, order_id: str, within: float = WAIT_SECONDS) -> dict[str, Any]:
        """The order's gateway refund row, once it is no longer PENDING."""
        deadline = time.monotonic() + within
        while True:
            [row] = await self.refund_rows(order_id)
            if row["status"] != "PENDING":
                return row
            assert time.monotonic() < deadline, f"the refund never ended: {row}"
            await asyncio.sleep(0.05)

    async def ledger_rows(self, order_id: str) -> list[tuple[str, str]]:
        """(wallet owner id, type) of every ledger row that references the order."""
        rows = await self._all(
            sa.select(wallets.c.user_id, wallet_transactions.c.type)
            .join(wallets, wallets.c.id == wallet_transactions.c.wallet_id)
            .where(wallet_transactions.c.reference_id == uuid.UUID(order_id))
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def expire_reservation(self, order_id: str, seconds_ago: int = 5) -> None:
        """Make the order's reservation due, as if its checkout TTL had passed."""
        statement = (
            sa.update(orders)
            .where(orders.c.id == uuid.UUID(order_id))
            .values(reservation_expires_at=utcnow() - timedelta(seconds=seconds_ago))
        )

        async def work(conn: AsyncConnection) -> None:
            result = await conn.execute(statement)
            assert result.rowcount == 1

        await self.db.transaction(with_conn(work))

    @asynccontextmanager
    async def own_context(
        self, gateway_class: type[StripeGateway] = StripeGateway
    ) -> AsyncIterator[AppContext]:
        """A context of the test's own on the live server's settings (same database, same Redis
        prefix), with a gateway (of `gateway_class`) that calls the live server's sandbox with
        the key it accepts. The server runs in another thread on its own event loop, so its own
        context (engine, pools) cannot be used from the test. Caveat: on SQLite the cache is
        in-process, so what this context changes is not refreshed in the server's cache (with
        Redis it is shared)."""
        config = self.context.sandbox
        assert config is not None, "this deployment does not serve the sandbox"
        assert config.public_base.startswith(self.base + "/"), (config.public_base, self.base)
        ctx = AppContext.create(self.settings)
        try:
            await ctx.gateway.aclose()  # made for a sandbox of its own, which does not exist
            gateway = gateway_class(config.api_key, config.public_base, config.webhook_secret)
            ctx = replace(ctx, gateway=gateway, sandbox=config)
            yield ctx
        finally:
            await ctx.close()

    async def sweep(self) -> SweepReport:
        """One round of payflow's sweeper, run now, to completion, by the test itself: what a
        test asserts after it follows a sweep that certainly happened (waiting a few
        SWEEPER_INTERVALs would pass as well if the server's sweeper never ran)."""
        async with self.own_context() as ctx:
            return await sweep_once(ctx)

    async def audit_ok(self) -> None:
        report = await run_audit(self.db)
        assert report.ok, report.as_text()

    async def _all(self, query: sa.Select[*tuple[Any, ...]]) -> list[sa.Row[*tuple[Any, ...]]]:
        async def work(conn: AsyncConnection) -> list[sa.Row[*tuple[Any, ...]]]:
            return list((await conn.execute(query)).all())

        return await self.db.read(work)

    async def _one(self, query: sa.Select[*tuple[Any, ...]]) -> sa.Row[*tuple[Any, ...]]:
        rows = await self._all(query)
        assert len(rows) == 1, rows
        return rows[0]


def live_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "public_url": f"http://127.0.0.1:{port}",
            "sweeper_interval_seconds": SWEEPER_INTERVAL,
            # A refund the gateway failed is retried within a couple of sweeper rounds.
            "refund_retry_base_seconds": SWEEPER_INTERVAL / 2,
            "refund_retry_max_seconds": 2 * SWEEPER_INTERVAL,
            "checkout_ttl_seconds": 60,
        }
    )


@pytest.fixture(name="live")
async def live_fixture(settings: Settings) -> AsyncIterator[Live]:
    """payflow on a free port of 127.0.0.1, with its sandbox, on this test's database."""
    port = free_port()
    configured = live_settings(settings, port)
    with serve_app_in_thread(configured, port) as (base, app):
        sandbox = cast(AppContext, app.state.context).sandbox
        assert sandbox is not None, "the live tests need the embedded payments sandbox"
        async with (
            httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, limits=CLIENT_LIMITS) as api,
            httpx.AsyncClient(
                base_url=f"{base}/sandbox/_sandbox",
                timeout=30,
                limits=CLIENT_LIMITS,
                headers=operator_headers(sandbox.api_key),  # the key payflow holds
            ) as control,
        ):
            db = Database(configured)
            try:
                yield Live(base, configured, app, api, control, db)
            finally:
                await db.dispose()
