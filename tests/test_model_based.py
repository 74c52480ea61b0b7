"""Model-based test of the ledger: a hypothesis state machine drives the real API against an
in-memory model and checks docs/api.md, Invariants after every step.

payflow runs in a real uvicorn on a free port (in a thread of the test process) with its payments
sandbox, because payflow reaches the sandbox's Stripe API over TCP. The machine talks to it only
over HTTP: the API, and the sandbox's control API to act as the buyer on the hosted page. The
sandbox's own webhook deliveries are switched off: the machine delivers each event itself (through
the sandbox's re-delivery, once or twice at once, or signed by the test), at once or whenever it
chooses later, in any order, so late, reordered, duplicated, replayed and forged events are all
part of the game. Its own engine on payflow's database runs `run_audit` and makes checkouts lapse.

Rules: register a USER or a MERCHANT (after trying a taken email); deposit; withdraw within and
beyond the balance; create a product; restock it, take it off sale and back, or delete it (by its
merchant or another); buy with the WALLET or through the GATEWAY, then pay, decline, pay later or
let the checkout expire at the gateway; let a reservation lapse (the sweeper asks the gateway and
releases or settles it); deliver a held event; repeat a delivered one or forge one; refund and
cancel (by the party allowed, and tried by the other party and by a stranger); and replay any
earlier money-moving request under its Idempotency-Key. Each rule asserts the outcome the model
predicts: status, problem code, and the body's figures.

After every step, for this run's accounts, products and orders: each balance (`GET /wallet`) is
the model's; each product's `availableUnits` and on-sale flag (API) and its available and reserved
units (database) are the model's; every order's status (`GET /orders`) is the model's, and a
buyer's only other orders are the FAILED ones its refused purchases left; and `run_audit` finds
every invariant holding over the whole database.

One payflow and one database per back end serve all the machine's runs: each run creates its own
accounts and products and compares only those; the audit is global and must always hold.
`test_scripted_runs_of_the_same_machine` plays the interleavings that a bounded random search
reaches too rarely to count on through the very same rules and checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

import httpx
import sqlalchemy as sa
import uvicorn
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.app import create_app
from payflow.audit.service import AuditReport, run_audit
from payflow.config import Settings
from payflow.core.db import Database
from payflow.core.money import format_minor
from payflow.core.tables import utcnow
from payflow.orders.models import orders as orders_table
from payflow.products.models import products as products_table
from payflow.sandbox.webhooks import signature_header
from payflow.wiring import AppContext
from tests.db_helpers import with_conn
from tests.live_app import free_port
from tests.live_server import CLIENT_LIMITS
from tests.sandbox.harness import operator_headers
from tests.support import DEFAULT_PASSWORD, assert_problem, unique_email

T = TypeVar("T")

MACHINE_SETTINGS = hypothesis_settings(
    # No shrinking: against a live server it takes many minutes; a failure prints its whole run.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)
SWEEPER_INTERVAL = 0.2  # seconds: a lapsed reservation is released within a few of these
ASYNC_PAYMENT_DELAY = 0.05  # seconds until the sandbox reports an async payment's result
WAIT_SECONDS = 10.0

USER, MERCHANT = "USER", "MERCHANT"
WALLET, GATEWAY = "WALLET", "GATEWAY"
PENDING, PROCESSING = "PENDING", "PAYMENT_PROCESSING"
COMPLETED, FAILED, CANCELLED, REFUNDED = "COMPLETED", "FAILED", "CANCELLED", "REFUNDED"
HOLDING_RESERVATION = frozenset({PENDING, PROCESSING})

# The checkout session at the sandbox.
OPEN, COMPLETE, EXPIRED = "open", "complete", "expired"

# The events the sandbox emits about a session, and Stripe's type for each.
PAID = "completed (paid)"
UNPAID = "completed (unpaid)"
ASYNC_SUCCEEDED = "async payment succeeded"
ASYNC_FAILED = "async payment failed"
SESSION_EXPIRED = "expired"
EVENT_TYPES = {
    PAID: "checkout.session.completed",
    UNPAID: "checkout.session.completed",
    ASYNC_SUCCEEDED: "checkout.session.async_payment_succeeded",
    ASYNC_FAILED: "checkout.session.async_payment_failed",
    SESSION_EXPIRED: "checkout.session.expired",
}
# What the buyer does on the hosted page → what the sandbox announces (the async result later).
CHECKOUT_EVENTS = {
    "pay": [PAID],
    "decline": [UNPAID, ASYNC_FAILED],
    "pay-later": [UNPAID, ASYNC_SUCCEEDED],
}
# Hypothesis draws the first of a sampled_from most often: the common case comes first.
PRICES = st.sampled_from([12_50, 3_00, 45_00, 99, 10, 30_00])  # 0.10: under the card minimum
UNITS = st.sampled_from([8, 2, 0, 20])
# Stripe's smallest card payment in USD, in cents: a checkout for less is refused.
CARD_MINIMUM = 50
SANDBOX_REPEAT, SIGNED_REPEAT = "again by the sandbox", "again, signed by the test"
CHECKOUT_ACTIONS = [*CHECKOUT_EVENTS, "expire"]
PRODUCT_CHANGES = ["restock", "switch on or off sale", "restock", "delete"]
REFUNDERS = ["merchant", "merchant", "buyer", "stranger"]
CANCELLERS = ["buyer", "buyer", "merchant", "stranger"]
FORGERIES = ("wrong secret", "stale timestamp", "no signature", "tampered body")


def money(minor: int) -> str:
    return format_minor(minor, "USD")


# -- the deployment under test ---------------------------------------------------------------


@dataclass
class LiveEnv:
    """payflow on a port of 127.0.0.1, clients for its API and sandbox, and the test's own
    engine on its database (driven by one event loop kept for the whole test)."""

    api: httpx.Client  # {base}/api/v1, for the steps
    control: httpx.Client  # {base}/sandbox/_sandbox
    observer: httpx.AsyncClient  # {base}/api/v1, for the invariants' concurrent reads
    webhook_secret: str
    db: Database
    runner: asyncio.Runner

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)


@contextlib.contextmanager
def _serving(app: Any, port: int) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"payflow-model-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("payflow did not start in its thread")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextlib.contextmanager
def live_env(settings: Settings) -> Iterator[LiveEnv]:
    port = free_port()
    configured = settings.model_copy(
        update={
            "public_url": f"http://127.0.0.1:{port}",
            "sweeper_interval_seconds": SWEEPER_INTERVAL,
            "refund_retry_base_seconds": SWEEPER_INTERVAL / 2,
            "refund_retry_max_seconds": 2 * SWEEPER_INTERVAL,
            # Nothing lapses by itself during the test: only the rule that makes it lapse.
            "checkout_ttl_seconds": 3600,
            # The model does not know the per-buyer reservation caps (tested on their own in
            # tests/orders/test_reservation_cap*.py): out of its reach.
            "max_open_reservations_per_buyer": 1000,
            "max_reserved_units_per_buyer": 100_000,
            "rate_limits_enabled": False,
            "log_level": "WARNING",
        }
    )
    context = AppContext.create(configured)
    assert context.sandbox is not None, "the test needs the embedded payments sandbox"
    context.sandbox = dataclasses.replace(context.sandbox, async_payment_delay=ASYNC_PAYMENT_DELAY)
    app = create_app(configured, context)
    with (
        _serving(app, port) as base,
        httpx.Client(base_url=f"{base}/api/v1", timeout=30, limits=CLIENT_LIMITS) as api,
        httpx.Client(
            base_url=f"{base}/sandbox/_sandbox",
            timeout=30,
            limits=CLIENT_LIMITS,
            headers=operator_headers(context.sandbox.api_key),
        ) as control,
        asyncio.Runner() as runner,
    ):
        switched = control.post("/webhooks", params={"enabled": "false"})
        assert switched.status_code == 200, switched.text
        observer = httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, limits=CLIENT_LIMITS)
        db = Database(configured)
        try:
            yield LiveEnv(api, control, observer, context.sandbox.webhook_secret, db, runner)
        finally:
            runner.run(observer.aclose())
            runner.run(db.dispose())


# -- the model -------------------------------------------------------------------------------


@dataclass
class AccountModel:
    handle: str  # "merchant-1", "user-2": how the machine's steps name it
    id: str
    role: str
    email: str
    headers: dict[str, str]
    balance: int = 0  # minor units
    refused_orders: int = 0  # FAILED orders left by refused purchases (the API names no id)


@dataclass
class ProductModel:
    handle: str
    id: str
    merchant: str  # the merchant's handle
    price: int
    available: int
    reserved: int = 0
    active: bool = True
    deleted: bool = False


@dataclass
class OrderModel:
    handle: str
    id: str
    buyer: str  # handles
    merchant: str
    product: str
    quantity: int
    amount: int
    method: str
    status: str
    session_id: str | None = None
    session: str = OPEN
    events: list[str] = field(default_factory=list)  # what the sandbox emitted (or will)
    delivered: list[str] = field(default_factory=list)
    event_ids: dict[str, str] = field(default_factory=dict)

    @property
    def undelivered(self) -> list[str]:
        return [kind for kind in self.events if kind not in self.delivered]


@dataclass(frozen=True)
class SentRequest:
    """A money-moving POST as sent, with its answer: replayed with the same key, whatever has
    happened since, it must be answered the same, byte for byte, and change nothing."""

    path: str
    body: dict[str, Any] | None
    headers: dict[str, str]
    status: int
    content: bytes


@dataclass(frozen=True)
class Observed:
    """What payflow shows after a step, keyed by the model's handles."""

    balances: dict[str, str]  # GET /wallet
    products: dict[str, tuple[int, bool] | None]  # GET /products/{id}: (units, on sale); None: 404
    stock: dict[str, tuple[int, int]]  # the database: (available, reserved)
    orders: dict[str, dict[str, str]]  # GET /orders: the buyer's orders, id → status
    audit: AuditReport


# -- the machine -----------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    env: ClassVar[LiveEnv]

    def __init__(self) -> None:
        super().__init__()
        self.api = self.env.api
        self.control = self.env.control
        self.people: dict[str, AccountModel] = {}
        self.stock: dict[str, ProductModel] = {}
        self.orders: dict[str, OrderModel] = {}
        self.sent: list[SentRequest] = []

    # -- helpers ---------------------------------------------------------------------------

    def _draw(self, data: st.DataObject, handles: Iterable[str], label: str) -> str:
        choices = list(handles)
        assert choices, f"no {label} to choose from"  # (the rules' preconditions see to it)
        return data.draw(st.sampled_from(choices), label=label)

    def _account(self, data: st.DataObject, label: str, role: str | None = None) -> AccountModel:
        handles = [h for h, a in self.people.items() if role is None or a.role == role]
        return self.people[self._draw(data, handles, label)]

    def _product(self, data: st.DataObject) -> ProductModel:
        return self.stock[self._draw(data, self.stock, "product")]

    def _order(self, data: st.DataObject, candidates: Iterable[OrderModel]) -> OrderModel:
        return self.orders[self._draw(data, (o.handle for o in candidates), "order")]

    def _register(self, role: str) -> AccountModel:
        email = unique_email(role.lower())
        response = self.api.post(
            "/auth/register", json={"email": email, "password": DEFAULT_PASSWORD, "role": role}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["user"]["role"] == role
        handle = f"{role.lower()}-{len(self.people) + 1}"
        account = AccountModel(
            handle=handle,
            id=body["user"]["id"],
            role=role,
            email=email,
            headers={"Authorization": f"Bearer {body['accessToken']}"},
        )
        self.people[handle] = account
        return account

    def _post_money(
        self, account: AccountModel, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """A money-moving POST under a fresh Idempotency-Key, kept for the replay rule."""
        headers = {**account.headers, "Idempotency-Key": f"model-{uuid.uuid4().hex}"}
        response = self.api.post(path, json=body, headers=headers)
        # Validation failures are not outcomes: never stored, so never replayed (docs/api.md).
        if response.status_code != 400 or response.json().get("code") != "VALIDATION_ERROR":
            self.sent.append(
                SentRequest(path, body, headers, response.status_code, response.content)
            )
        return response

    def _deposit(self, account: AccountModel, minor: int, *, as_number: bool = False) -> None:
        amount: str | float = minor / 100 if as_number else money(minor)
        response = self._post_money(account, "/wallet/deposit", {"amount": amount})
        assert response.status_code == 201, response.text
        account.balance += minor
        body = response.json()
        assert body["wallet"]["balance"] == money(account.balance)
        transaction = body["transaction"]
        assert (transaction["type"], transaction["amount"]) == ("DEPOSIT", money(minor))
        assert transaction["balanceAfter"] == money(account.balance)

    def _create_product(self, merchant: AccountModel, price: int, units: int) -> ProductModel:
        response = self.api.post(
            "/products",
            json={
                "name": f"model-{uuid.uuid4().hex[:8]}",
                "price": money(price),
                "availableUnits": units,
            },
            headers=merchant.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["price"], body["availableUnits"], body["merchantId"]) == (
            money(price),
            units,
            merchant.id,
        )
        handle = f"product-{len(self.stock) + 1}"
        self.stock[handle] = ProductModel(handle, body["id"], merchant.handle, price, units)
        return self.stock[handle]

    def _gateway_orders(self) -> list[OrderModel]:
        return [o for o in self.orders.values() if o.method == GATEWAY]

    def _pending_gateway(self) -> list[OrderModel]:
        return [o for o in self._gateway_orders() if o.status == PENDING]

    def _open_sessions(self) -> list[OrderModel]:
        return [o for o in self._gateway_orders() if o.session == OPEN]

    def _with_undelivered(self) -> list[OrderModel]:
        return [o for o in self._gateway_orders() if o.undelivered]

    def _with_events(self) -> list[OrderModel]:
        return [o for o in self._gateway_orders() if o.events]

    def _party(self, order: OrderModel, who: str) -> AccountModel:
        """The order's buyer or merchant, or a stranger to it (the merchant if nobody else)."""
        if who == "buyer":
            return self.people[order.buyer]
        if who == "stranger":
            for account in self.people.values():
                if account.handle not in (order.buyer, order.merchant):
                    return account
        return self.people[order.merchant]

    def _purchase_refusal(
        self, product: ProductModel, buyer: AccountModel, quantity: int
    ) -> tuple[int, str] | None:
        """Why the product cannot be taken, in the order payflow checks it (docs/api.md)."""
        if product.deleted:
            return 404, "NOT_FOUND"
        if not product.active or product.merchant == buyer.handle:
            return 409, "PRODUCT_UNAVAILABLE"
        if product.available < quantity:
            return 409, "OUT_OF_STOCK"
        return None

    def _event_id(self, order: OrderModel, kind: str) -> str:
        """The sandbox's id of the event of this kind about the order's session; an async
        result, or the expiry the sweeper caused, may take a moment to be emitted."""
        if kind in order.event_ids:
            return order.event_ids[kind]
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            listed = self.control.get(
                "/events", params={"object_id": order.session_id, "type": EVENT_TYPES[kind]}
            )
            assert listed.status_code == 200, listed.text
            found = listed.json()["data"]
            if found:
                assert len(found) == 1, found  # the sandbox announces each change once
                order.event_ids[kind] = found[0]["id"]
                return order.event_ids[kind]
            assert time.monotonic() < deadline, f"{order.handle}: the sandbox never emitted {kind}"
            time.sleep(0.02)

    def _event_body(self, event_id: str) -> bytes:
        shown = self.control.get(f"/events/{event_id}")
        assert shown.status_code == 200, shown.text
        return json.dumps(shown.json()["event"], indent=2).encode()

    def _post_webhook(self, body: bytes, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return self.api.post("/webhooks/stripe", content=body, headers=headers)

    def _release(self, order: OrderModel, status: str) -> None:
        product = self.stock[order.product]
        product.reserved -= order.quantity
        product.available += order.quantity
        order.status = status

    def _session_ends(self, order: OrderModel) -> None:
        """payflow expired the order's checkout at the sandbox, which announces it if open."""
        if order.session == OPEN:
            order.session = EXPIRED
            order.events.append(SESSION_EXPIRED)

    def _apply_event(self, order: OrderModel, kind: str) -> None:
        """What a verified event does to the order (docs/api.md, Orders): only ever forward."""
        if kind in (PAID, ASYNC_SUCCEEDED):
            self._fulfil(order)
        elif kind == UNPAID:
            if order.status == PENDING:
                order.status = PROCESSING
        elif kind == ASYNC_FAILED:
            if order.status in HOLDING_RESERVATION:
                self._release(order, FAILED)
        elif kind == SESSION_EXPIRED and order.status == PENDING:
            self._release(order, CANCELLED)

    def _fulfil(self, order: OrderModel) -> None:
        product = self.stock[order.product]
        if order.status in (COMPLETED, REFUNDED):
            return
        if order.status in HOLDING_RESERVATION:
            product.reserved -= order.quantity  # reserved units become sold
        elif product.available >= order.quantity:  # paid after the reservation was released
            product.available -= order.quantity
        else:  # …and the stock is gone: the payment is refunded through the gateway
            order.status = REFUNDED
            return
        order.status = COMPLETED
        self.people[order.merchant].balance += order.amount

    # -- the start: a merchant with a product on sale, and a buyer with some money ---------

    @initialize(price=PRICES, units=UNITS, funds=st.sampled_from([50_00, 0, 5_00, 200_00]))
    def open_shop(self, price: int, units: int, funds: int) -> None:
        buyer = self._register(USER)  # first: the account drawn most often
        if funds:
            self._deposit(buyer, funds)
        self._create_product(self._register(MERCHANT), price, units)

    # Every rule takes only `data` and draws its arguments itself, labelled. Hypothesis orders
    # rules by their number of arguments, then by name, and draws the first one most often: so
    # that one is `buy`, the rule that feeds all the others.

    # -- accounts --------------------------------------------------------------------------

    @rule(data=st.data())
    def register(self, data: st.DataObject) -> None:
        role = data.draw(st.sampled_from([USER, MERCHANT]), label="role")
        if data.draw(st.booleans(), label="first with a taken email"):
            # An existing address in other letters: emails are compared normalised.
            taken = self._account(data, "taken from").email.upper()
            response = self.api.post(
                "/auth/register", json={"email": taken, "password": DEFAULT_PASSWORD}
            )
            assert_problem(response, 409, "EMAIL_TAKEN")
        self._register(role)

    # -- wallets ---------------------------------------------------------------------------

    @rule(data=st.data())
    def deposit(self, data: st.DataObject) -> None:
        account = self._account(data, "account")
        minor = data.draw(st.integers(1, 100_00), label="cents")
        self._deposit(account, minor, as_number=data.draw(st.booleans(), label="as a number"))

    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        """Within or beyond the balance; `None` withdraws exactly the whole balance (a cent
        when there is none)."""
        account = self._account(data, "account")
        minor = data.draw(st.one_of(st.none(), st.integers(1, 120_00)), label="cents")
        amount = minor if minor is not None else max(account.balance, 1)
        response = self._post_money(account, "/wallet/withdraw", {"amount": money(amount)})
        if amount > account.balance:
            assert_problem(response, 400, "INSUFFICIENT_FUNDS")
            return
        assert response.status_code == 201, response.text
        account.balance -= amount
        assert response.json()["wallet"]["balance"] == money(account.balance)
        assert response.json()["transaction"]["type"] == "WITHDRAWAL"

    # -- products --------------------------------------------------------------------------

    @rule(data=st.data())
    def create_product(self, data: st.DataObject) -> None:
        merchant = self._account(data, "merchant", MERCHANT)
        price = data.draw(PRICES, label="price")
        self._create_product(merchant, price, data.draw(UNITS, label="units"))

    @rule(data=st.data())
    def edit_product(self, data: st.DataObject) -> None:
        """Restock, take off sale or back, or delete (soft): only its merchant may (docs/api.md)."""
        product = self._product(data)
        change = data.draw(st.sampled_from(PRODUCT_CHANGES), label="change")
        owner = self.people[product.merchant]
        editor = owner
        if not data.draw(st.booleans(), label="by its merchant"):
            editor = self._account(data, "by", MERCHANT)
        path = f"/products/{product.id}"
        units = data.draw(UNITS, label="units") if change == "restock" else 0
        if change == "delete":
            response = self.api.delete(path, headers=editor.headers)
        else:
            body = {"availableUnits": units} if change == "restock" else {}
            body = body or {"isActive": not product.active}
            response = self.api.patch(path, json=body, headers=editor.headers)
        if product.deleted or (editor is not owner and not product.active):
            assert_problem(response, 404, "NOT_FOUND")
        elif editor is not owner:
            assert_problem(response, 403, "FORBIDDEN")
        elif change == "delete":
            assert response.status_code == 204, response.text
            product.deleted = True
        else:
            assert response.status_code == 200, response.text
            if change == "restock":
                product.available = units  # reserved units are not touched
            else:
                product.active = not product.active

    # -- purchases -------------------------------------------------------------------------

    @rule(data=st.data())
    def buy(self, data: st.DataObject) -> None:
        """With the WALLET (at once) or through the GATEWAY (a reservation and a checkout, on
        which the buyer may act at once, with its events arriving at once or later)."""
        method = data.draw(st.sampled_from([GATEWAY, WALLET]), label="method")
        quantity = data.draw(st.integers(1, 3), label="quantity")
        buyer, product = self._account(data, "buyer"), self._product(data)
        amount = product.price * quantity
        response = self._post_money(
            buyer,
            "/orders",
            {"productId": product.id, "paymentMethod": method, "quantity": quantity},
        )
        refusal = self._purchase_refusal(product, buyer, quantity)
        if refusal is None and method == WALLET and buyer.balance < amount:
            refusal = (400, "INSUFFICIENT_FUNDS")
        if refusal is None and method == GATEWAY and amount < CARD_MINIMUM:
            refusal = (400, "VALIDATION_ERROR")  # Stripe refuses it; the reservation is undone
        if refusal is not None:
            assert_problem(response, *refusal)
            if refusal[1] != "NOT_FOUND":  # the product exists: a FAILED order says why
                buyer.refused_orders += 1
            return
        assert response.status_code == 201, response.text
        body = response.json()
        order = body if method == WALLET else body["order"]
        status = COMPLETED if method == WALLET else PENDING
        assert (order["status"], order["paymentMethod"]) == (status, method)
        assert (order["quantity"], order["amount"]) == (quantity, money(amount))
        handle = f"order-{len(self.orders) + 1}"
        model = OrderModel(
            handle,
            order["id"],
            buyer.handle,
            product.merchant,
            product.handle,
            quantity,
            amount,
            method,
            status,
        )
        self.orders[handle] = model
        product.available -= quantity
        if method == WALLET:
            buyer.balance -= amount
            self.people[product.merchant].balance += amount
            return
        assert order["stripeSessionId"] == body["sessionId"]
        model.session_id = body["sessionId"]
        product.reserved += quantity
        action = data.draw(st.sampled_from([*CHECKOUT_ACTIONS, None]), label="then at checkout")
        if action is not None:
            self._checkout(data, model, action)

    # -- the checkout, at the sandbox ------------------------------------------------------

    def _checkout(self, data: st.DataObject, order: OrderModel, action: str) -> None:
        """The buyer pays, declines or pays later on the hosted page, or the session expires
        at the gateway. Its events reach payflow at once (as the sandbox would deliver them),
        or are held back for `deliver_an_event` to deliver late, or out of order."""
        response = self.control.post(f"/sessions/{order.session_id}/{action}")
        assert response.status_code == 200, response.text
        if action == "expire":
            self._session_ends(order)
        else:
            assert response.json()["session"]["status"] == COMPLETE
            order.session = COMPLETE
            order.events.extend(CHECKOUT_EVENTS[action])
        if data.draw(st.sampled_from([True, False]), label="its events arrive at once"):
            for kind in order.undelivered:
                self._deliver(order, kind)

    def _deliver(self, order: OrderModel, kind: str, copies: int = 1) -> None:
        event_id = self._event_id(order, kind)
        response = self.control.post(f"/events/{event_id}/deliver", params={"times": copies})
        assert response.status_code == 200, response.text
        assert [d["status"] for d in response.json()["data"]] == [200] * copies, response.text
        order.delivered.append(kind)
        self._apply_event(order, kind)

    @precondition(lambda self: bool(self._open_sessions()))
    @rule(data=st.data())
    def checkout(self, data: st.DataObject) -> None:
        order = self._order(data, self._open_sessions())
        self._checkout(data, order, data.draw(st.sampled_from(CHECKOUT_ACTIONS), label="action"))

    @precondition(lambda self: bool(self._pending_gateway()))
    @rule(data=st.data())
    def let_a_reservation_lapse(self, data: st.DataObject) -> None:
        """The checkout's time runs out while payflow has heard nothing: the sweeper asks the
        gateway (docs/api.md, Orders). A checkout still open is expired and the stock released; one the
        buyer completed in time settles the order as its late event would have."""
        order = self._order(data, self._pending_gateway())
        for kind in order.events:  # the gateway has settled what it will (async results too)
            self._event_id(order, kind)
        statement = (
            sa.update(orders_table)
            .where(orders_table.c.id == uuid.UUID(order.id))
            .values(reservation_expires_at=utcnow() - timedelta(seconds=5))
        )

        async def lapse(conn: AsyncConnection) -> None:
            assert (await conn.execute(statement)).rowcount == 1

        self.env.run(self.env.db.transaction(with_conn(lapse)))
        buyer = self.people[order.buyer]
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            response = self.api.get(f"/orders/{order.id}", headers=buyer.headers)
            assert response.status_code == 200, response.text
            if response.json()["status"] != PENDING:
                break
            assert time.monotonic() < deadline, "the sweeper never ended the reservation"
            time.sleep(SWEEPER_INTERVAL / 4)
        if order.session != COMPLETE:
            self._release(order, CANCELLED)
            self._session_ends(order)
        elif PAID in order.events or ASYNC_SUCCEEDED in order.events:
            self._fulfil(order)
        else:  # declined: the payment's failure is still to be announced
            order.status = PROCESSING
        assert response.json()["status"] == order.status, response.text
        if order.status == CANCELLED:
            assert response.json()["failureReason"].startswith("EXPIRED")

    # -- webhooks --------------------------------------------------------------------------

    @precondition(lambda self: bool(self._with_undelivered()))
    @rule(data=st.data())
    def deliver_an_event(self, data: st.DataObject) -> None:
        """Any event held back, in any order; two copies at once are concurrent duplicates,
        of which exactly one may take effect."""
        order = self._order(data, self._with_undelivered())
        kind = self._draw(data, order.undelivered, "event")
        self._deliver(order, kind, copies=data.draw(st.integers(1, 2), label="copies"))

    @precondition(lambda self: bool(self._with_events()))
    @rule(data=st.data())
    def repeat_or_forge_an_event(self, data: st.DataObject) -> None:
        """A delivered event again — Stripe delivers at least once — is acknowledged and does
        nothing. A copy of any event (delivered or not) without a valid signature is a 400 and
        is not even recorded: its genuine delivery later must still take effect."""
        order = self._order(data, self._with_events())
        kind = self._draw(data, order.events, "event")
        event_id = self._event_id(order, kind)
        repeats = [SANDBOX_REPEAT, SIGNED_REPEAT] if kind in order.delivered else []
        how = self._draw(data, [*repeats, *FORGERIES], "delivery")
        if how == SANDBOX_REPEAT:
            response = self.control.post(f"/events/{event_id}/deliver")
            assert response.status_code == 200, response.text
            assert [d["status"] for d in response.json()["data"]] == [200], response.text
            return
        body = self._event_body(event_id)
        now = int(time.time())
        signature: str | None = signature_header(body, self.env.webhook_secret, now)
        if how == SIGNED_REPEAT:
            response = self._post_webhook(body, signature)
            assert response.status_code == 200, response.text
            assert response.json() == {"received": True}
            return
        if how == "wrong secret":
            signature = signature_header(body, "whsec_" + "forged" * 6, now)
        elif how == "stale timestamp":
            signature = signature_header(body, self.env.webhook_secret, now - 301)
        elif how == "tampered body":
            event = json.loads(body)
            event["data"]["object"]["amount_total"] = 1
            body = json.dumps(event, indent=2).encode()
        else:
            signature = None
        assert_problem(self._post_webhook(body, signature), 400, "INVALID_SIGNATURE")

    # -- refunds and cancellations ---------------------------------------------------------

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        """By the order's merchant (docs/api.md, Orders), or tried by its buyer (403) or a stranger (404)."""
        order = self._order(data, self.orders.values())
        actor = self._party(order, data.draw(st.sampled_from(REFUNDERS), label="by"))
        merchant = self.people[order.merchant]
        reason = data.draw(st.sampled_from([None, "customer asked"]), label="reason")
        body = {"reason": reason} if reason else None
        response = self._post_money(actor, f"/orders/{order.id}/refund", body)
        if actor.handle not in (order.buyer, order.merchant):
            assert_problem(response, 404, "NOT_FOUND")  # never reveal another's order
        elif actor is not merchant:
            assert_problem(response, 403, "FORBIDDEN")
        elif order.status != COMPLETED:
            assert_problem(response, 409, "ORDER_STATE_CONFLICT")
        elif merchant.balance < order.amount:
            assert_problem(response, 400, "INSUFFICIENT_FUNDS")
        else:
            assert response.status_code == 200, response.text
            assert response.json()["status"] == REFUNDED
            order.status = REFUNDED
            merchant.balance -= order.amount
            if order.method == WALLET:  # a gateway order is refunded to the card instead
                self.people[order.buyer].balance += order.amount
            self.stock[order.product].available += order.quantity

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """By the order's buyer (a PENDING gateway order only), or tried by its merchant (403)
        or a stranger (404)."""
        order = self._order(data, self.orders.values())
        actor = self._party(order, data.draw(st.sampled_from(CANCELLERS), label="by"))
        response = self._post_money(actor, f"/orders/{order.id}/cancel")
        if actor.handle not in (order.buyer, order.merchant):
            assert_problem(response, 404, "NOT_FOUND")
        elif actor.handle != order.buyer:
            assert_problem(response, 403, "FORBIDDEN")
        elif order.method != GATEWAY or order.status != PENDING or order.session == COMPLETE:
            # (a checkout already completed has a payment settling: too late to cancel)
            assert_problem(response, 409, "ORDER_STATE_CONFLICT")
        else:
            assert response.status_code == 200, response.text
            assert response.json()["status"] == CANCELLED
            self._release(order, CANCELLED)
            self._session_ends(order)

    # -- idempotency -----------------------------------------------------------------------

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def replay_a_money_request(self, data: st.DataObject) -> None:
        """Any earlier money-moving POST of this run, again with its key (docs/api.md): the stored
        answer, even if the request would now be answered otherwise, and no second effect."""
        index = data.draw(st.integers(0, len(self.sent) - 1), label="request number")
        sent = self.sent[index]
        response = self.api.post(sent.path, json=sent.body, headers=sent.headers)
        assert response.status_code == sent.status, response.text
        assert response.content == sent.content
        assert response.headers["idempotent-replayed"] == "true"

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def payflow_agrees_with_the_model(self) -> None:
        """After every step: this run's balances, stock and orders are the model's, and every
        invariant holds over the whole database. Everything is read at once."""
        observed = self.env.run(self._observe())
        for account in self.people.values():
            shown = observed.balances[account.handle]
            assert shown == money(account.balance), (
                f"{account.handle} has {shown}, the model says {money(account.balance)}"
            )
        for product in self.stock.values():
            assert observed.products[product.handle] == (
                None if product.deleted else (product.available, product.active)
            ), f"{product.handle} is {observed.products[product.handle]}: the model says {product}"
        assert observed.stock == {p.handle: (p.available, p.reserved) for p in self.stock.values()}
        for account in self.people.values():
            listed = observed.orders[account.handle]
            mine = {o.id: o for o in self.orders.values() if o.buyer == account.handle}
            assert {o.handle: listed.get(oid) for oid, o in mine.items()} == {
                o.handle: o.status for o in mine.values()
            }
            others = sorted(status for oid, status in listed.items() if oid not in mine)
            assert others == [FAILED] * account.refused_orders, (account.handle, others)
        assert observed.audit.ok, observed.audit.as_text()

    async def _observe(self) -> Observed:
        api = self.env.observer

        async def balance(account: AccountModel) -> str:
            response = await api.get("/wallet", headers=account.headers)
            assert response.status_code == 200, response.text
            return str(response.json()["balance"])

        async def product(model: ProductModel) -> tuple[int, bool] | None:
            owner = self.people[model.merchant]
            response = await api.get(f"/products/{model.id}", headers=owner.headers)
            if response.status_code == 404:
                assert_problem(response, 404, "NOT_FOUND")
                return None
            assert response.status_code == 200, response.text
            return response.json()["availableUnits"], response.json()["isActive"]

        async def orders(account: AccountModel) -> dict[str, str]:
            found: dict[str, str] = {}
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                response = await api.get("/orders", params=params, headers=account.headers)
                assert response.status_code == 200, response.text
                found.update({o["id"]: o["status"] for o in response.json()["data"]})
                cursor = response.json()["meta"]["nextCursor"]
                if cursor is None:
                    return found

        ids = {uuid.UUID(p.id): p.handle for p in self.stock.values()}
        query = sa.select(
            products_table.c.id, products_table.c.available_units, products_table.c.reserved_units
        ).where(products_table.c.id.in_(list(ids)))

        async def stored(conn: AsyncConnection) -> dict[str, tuple[int, int]]:
            rows = (await conn.execute(query)).all()
            return {ids[row[0]]: (int(row[1]), int(row[2])) for row in rows}

        people, stock = list(self.people.values()), list(self.stock.values())
        balances, shown, listed, units, audit = await asyncio.gather(
            asyncio.gather(*(balance(a) for a in people)),
            asyncio.gather(*(product(p) for p in stock)),
            asyncio.gather(*(orders(a) for a in people)),
            self.env.db.read(stored),
            run_audit(self.env.db),
        )
        return Observed(
            balances={a.handle: b for a, b in zip(people, balances, strict=True)},
            products={p.handle: s for p, s in zip(stock, shown, strict=True)},
            stock=units,
            orders={a.handle: o for a, o in zip(people, listed, strict=True)},
            audit=audit,
        )


# -- the tests -------------------------------------------------------------------------------


def machine_on(env: LiveEnv) -> type[LedgerMachine]:
    class LedgerMachineHere(LedgerMachine):
        pass

    LedgerMachineHere.env = env
    return LedgerMachineHere


def test_the_api_behaves_as_the_model_of_the_ledger_says(settings: Settings) -> None:
    with live_env(settings) as env:
        run_state_machine_as_test(machine_on(env), settings=MACHINE_SETTINGS)
        final = env.run(run_audit(env.db))
        assert final.ok, final.as_text()


class ScriptedDraws:
    """Stands in for hypothesis's data object in a scripted run: each labelled draw is
    answered from the script."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def draw(self, strategy: st.SearchStrategy[T], label: Any = None) -> T:
        assert label in self.answers, f"the script does not say what {label!r} is"
        value: T = self.answers[label]
        # A choice among candidates (an order in the state the rule needs, …) must be one.
        choices = getattr(strategy, "elements", None)
        assert choices is None or value in choices, f"{label}: {value!r} is not one of {choices}"
        return value


Step = tuple[str, dict[str, Any]]
Script = tuple[dict[str, int], list[Step]]  # open_shop's arguments, then (rule, draws) steps

BUY_GATEWAY = {"method": GATEWAY, "buyer": "user-1", "product": "product-1"}
HELD = {"its events arrive at once": False}
# The interleavings that random runs reach too rarely to count on, played in every run. Accounts
# are named in the order they were registered: open_shop makes user-1 and merchant-2.
SCRIPTS: dict[str, Script] = {
    "a pay-later checkout whose events arrive late, reversed, twice and forged": (
        {"price": 12_50, "units": 3, "funds": 0},
        [
            ("buy", {**BUY_GATEWAY, "quantity": 2, "then at checkout": "pay-later", **HELD}),
            ("cancel", {"order": "order-1", "by": "buyer"}),  # too late: the buyer has paid
            (
                "repeat_or_forge_an_event",
                {"order": "order-1", "event": ASYNC_SUCCEEDED, "delivery": "tampered body"},
            ),
            ("deliver_an_event", {"order": "order-1", "event": ASYNC_SUCCEEDED, "copies": 2}),
            ("deliver_an_event", {"order": "order-1", "event": UNPAID, "copies": 1}),
            (
                "repeat_or_forge_an_event",
                {"order": "order-1", "event": ASYNC_SUCCEEDED, "delivery": SIGNED_REPEAT},
            ),
            ("refund", {"order": "order-1", "by": "buyer", "reason": None}),
            ("refund", {"order": "order-1", "by": "merchant", "reason": "customer asked"}),
            ("replay_a_money_request", {"request number": 3}),
        ],
    ),
    "a card paid in time whose event is lost: the sweeper settles the order": (
        {"price": 45_00, "units": 1, "funds": 100_00},
        [
            ("register", {"role": USER, "first with a taken email": True, "taken from": "user-1"}),
            ("buy", {**BUY_GATEWAY, "quantity": 1, "then at checkout": "pay", **HELD}),
            ("buy", {**BUY_GATEWAY, "method": WALLET, "buyer": "user-3", "quantity": 1}),
            ("let_a_reservation_lapse", {"order": "order-1"}),
            ("deliver_an_event", {"order": "order-1", "event": PAID, "copies": 2}),
            ("cancel", {"order": "order-1", "by": "stranger"}),
            ("refund", {"order": "order-1", "by": "stranger", "reason": None}),
            (
                "edit_product",
                {"product": "product-1", "change": "restock", "by its merchant": True, "units": 2},
            ),
            ("buy", {**BUY_GATEWAY, "method": WALLET, "quantity": 2}),
            ("refund", {"order": "order-2", "by": "merchant", "reason": None}),
            ("withdraw", {"account": "merchant-2", "cents": None}),
            ("refund", {"order": "order-1", "by": "merchant", "reason": None}),  # cannot cover it
            ("deposit", {"account": "merchant-2", "cents": 45_00, "as a number": True}),
            ("refund", {"order": "order-1", "by": "merchant", "reason": None}),
            ("replay_a_money_request", {"request number": 0}),
        ],
    ),
    "a declined async payment, its failure announced after the checkout lapsed": (
        {"price": 3_00, "units": 2, "funds": 0},
        [
            ("buy", {**BUY_GATEWAY, "quantity": 2, "then at checkout": "decline", **HELD}),
            ("let_a_reservation_lapse", {"order": "order-1"}),
            ("cancel", {"order": "order-1", "by": "buyer"}),
            ("deliver_an_event", {"order": "order-1", "event": ASYNC_FAILED, "copies": 1}),
            ("deliver_an_event", {"order": "order-1", "event": UNPAID, "copies": 2}),
            (
                "repeat_or_forge_an_event",
                {"order": "order-1", "event": UNPAID, "delivery": "wrong secret"},
            ),
            ("refund", {"order": "order-1", "by": "merchant", "reason": None}),
            # the same product paid later, its events in order: settling, then paid
            ("buy", {**BUY_GATEWAY, "quantity": 1, "then at checkout": "pay-later", **HELD}),
            ("deliver_an_event", {"order": "order-2", "event": UNPAID, "copies": 1}),
            ("cancel", {"order": "order-2", "by": "buyer"}),
            ("deliver_an_event", {"order": "order-2", "event": ASYNC_SUCCEEDED, "copies": 1}),
            ("refund", {"order": "order-2", "by": "merchant", "reason": None}),
        ],
    ),
    "abandoned checkouts, a product taken off sale and deleted, a total under the card minimum": (
        {"price": 12_50, "units": 4, "funds": 0},
        [
            ("buy", {**BUY_GATEWAY, "quantity": 1, "then at checkout": "expire", **HELD}),
            ("cancel", {"order": "order-1", "by": "buyer"}),
            ("deliver_an_event", {"order": "order-1", "event": SESSION_EXPIRED, "copies": 1}),
            ("buy", {**BUY_GATEWAY, "quantity": 2, "then at checkout": None}),
            ("let_a_reservation_lapse", {"order": "order-2"}),
            ("deliver_an_event", {"order": "order-2", "event": SESSION_EXPIRED, "copies": 2}),
            ("cancel", {"order": "order-2", "by": "merchant"}),
            ("buy", {**BUY_GATEWAY, "quantity": 1, "then at checkout": None}),
            ("checkout", {"order": "order-3", "action": "pay", "its events arrive at once": True}),
            (
                "edit_product",
                {
                    "product": "product-1",
                    "change": "switch on or off sale",
                    "by its merchant": True,
                },
            ),
            ("buy", {**BUY_GATEWAY, "method": WALLET, "quantity": 1}),
            ("edit_product", {"product": "product-1", "change": "delete", "by its merchant": True}),
            ("buy", {**BUY_GATEWAY, "quantity": 1}),
            ("create_product", {"merchant": "merchant-2", "price": 10, "units": 8}),
            ("buy", {**BUY_GATEWAY, "product": "product-2", "quantity": 1}),
        ],
    ),
}


def test_scripted_runs_of_the_same_machine(settings: Settings) -> None:
    with live_env(settings) as env:
        for name, (opening, steps) in SCRIPTS.items():
            machine = machine_on(env)()
            machine.open_shop(**opening)
            machine.payflow_agrees_with_the_model()
            for number, (rule_name, answers) in enumerate(steps, start=1):
                try:
                    getattr(machine, rule_name)(ScriptedDraws(answers))
                    machine.payflow_agrees_with_the_model()
                except AssertionError as failure:
                    failure.add_note(f"{name}: step {number}, {rule_name} with {answers}")
                    raise
            machine.teardown()
