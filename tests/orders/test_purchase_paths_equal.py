"""The two wallet purchases, purchase_statement.purchase (one PostgreSQL statement) and
purchase_steps.purchase (step by step), must give the same answer and write the same rows.

Each scenario builds one world, snapshots every table, then runs the same `PurchaseRequest`
through each path in a transaction of its own: on success the tables are read inside that
transaction, then it is rolled back, so both paths start from the same rows (same ids, versions
and balances) and their results can be compared exactly. Compared: the returned `Purchase` and
every row of every table, except the random id of a ledger row. A refusal must write nothing:
the statement raises PurchaseRefused, the steps the domain error named by the scenario.

The order of the two wallet legs of the step-by-step path follows the wallet ids, so every
scenario runs with the buyer's wallet id below the merchant's and above it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.core.errors import DomainError, NotFound
from payflow.core.money import MAX_MINOR_UNITS
from payflow.core.tables import utcnow
from payflow.migrations.model_registry import metadata
from payflow.orders import purchase_statement, purchase_steps
from payflow.orders.models import OrderStatus
from payflow.orders.purchase_statement import Purchase, PurchaseRefused, PurchaseRequest
from payflow.products.errors import OutOfStock, ProductUnavailable
from payflow.wallets.errors import BalanceLimitExceeded, InsufficientFunds, WalletLocked
from payflow.wallets.models import wallet_transactions
from tests.conftest import TEST_DATABASE_URL
from tests.support import Account, create_product, deposit, register

pytestmark = [
    pytest.mark.skipif(not TEST_DATABASE_URL, reason="set TEST_DATABASE_URL to run"),
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]

PRICE = 2000  # "20.00"
UNITS = 3

State = dict[str, list[dict[str, Any]]]
PurchasePath = Callable[[AsyncConnection, PurchaseRequest], Awaitable[Purchase]]


@dataclass(frozen=True)
class World:
    merchant: Account
    buyer: Account
    product_id: uuid.UUID
    merchant_wallet: uuid.UUID
    buyer_wallet: uuid.UUID


async def _none(conn: AsyncConnection, world: World) -> None:
    pass


async def _lock_buyer(conn: AsyncConnection, world: World) -> None:
    await conn.execute(
        sa.text("UPDATE wallets SET is_locked = true WHERE id = :w"), {"w": world.buyer_wallet}
    )


async def _lock_merchant(conn: AsyncConnection, world: World) -> None:
    await conn.execute(
        sa.text("UPDATE wallets SET is_locked = true WHERE id = :w"), {"w": world.merchant_wallet}
    )


async def _lock_both(conn: AsyncConnection, world: World) -> None:
    await _lock_buyer(conn, world)
    await _lock_merchant(conn, world)


def _balance(
    owner: Literal["buyer", "merchant"], balance: int
) -> Callable[[AsyncConnection, World], Awaitable[None]]:
    async def setup(conn: AsyncConnection, world: World) -> None:
        wallet = world.buyer_wallet if owner == "buyer" else world.merchant_wallet
        await conn.execute(
            sa.text("UPDATE wallets SET balance = :b WHERE id = :w"), {"b": balance, "w": wallet}
        )

    return setup


async def _inactive(conn: AsyncConnection, world: World) -> None:
    await conn.execute(
        sa.text("UPDATE products SET is_active = false WHERE id = :p"), {"p": world.product_id}
    )


async def _deleted(conn: AsyncConnection, world: World) -> None:
    await conn.execute(
        sa.text("UPDATE products SET deleted_at = now() WHERE id = :p"), {"p": world.product_id}
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Callable[[AsyncConnection, World], Awaitable[None]] = _none
    quantity: int = 1
    who: Literal["buyer", "merchant"] = "buyer"
    product: Literal["known", "unknown"] = "known"
    key: str | None = None
    # What the step-by-step path raises (None: the purchase is made), by which wallet leg it
    # runs first; `refused_merchant_leg_first` only when that changes the answer.
    refused: type[DomainError] | None = None
    refused_merchant_leg_first: type[DomainError] | None = None

    def expected(self, merchant_leg_first: bool) -> type[DomainError] | None:
        if merchant_leg_first and self.refused_merchant_leg_first is not None:
            return self.refused_merchant_leg_first
        return self.refused


SCENARIOS = [
    Scenario("one_unit"),
    Scenario("several_units_keyed", quantity=2, key="key-several-units"),
    Scenario("buyer_spends_everything", _balance("buyer", 2 * PRICE), quantity=2),
    Scenario("the_last_units", _balance("buyer", UNITS * PRICE), quantity=UNITS),
    Scenario("merchant_reaches_the_maximum", _balance("merchant", MAX_MINOR_UNITS - PRICE)),
    Scenario("out_of_stock", quantity=UNITS + 1, refused=OutOfStock),
    Scenario("insufficient_funds", quantity=UNITS, refused=InsufficientFunds),
    Scenario("buyer_wallet_locked", _lock_buyer, refused=WalletLocked),
    Scenario("merchant_wallet_locked", _lock_merchant, refused=ProductUnavailable),
    Scenario(
        "both_wallets_locked",
        _lock_both,
        refused=WalletLocked,
        refused_merchant_leg_first=ProductUnavailable,
    ),
    Scenario(
        "merchant_at_the_maximum",
        _balance("merchant", MAX_MINOR_UNITS),
        refused=BalanceLimitExceeded,
    ),
    Scenario(
        "merchant_would_pass_the_maximum_by_one",
        _balance("merchant", MAX_MINOR_UNITS - PRICE + 1),
        refused=BalanceLimitExceeded,
    ),
    Scenario("product_inactive", _inactive, refused=ProductUnavailable),
    Scenario("product_deleted", _deleted, refused=NotFound),
    Scenario(
        "own_product", _balance("merchant", 100_000), who="merchant", refused=ProductUnavailable
    ),
    Scenario("unknown_product", product="unknown", refused=NotFound),
]


async def _wallet_id(engine: AsyncEngine, account: Account) -> uuid.UUID:
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.text("SELECT id FROM wallets WHERE user_id = :u"), {"u": uuid.UUID(account.id)}
        )
        wallet_id: uuid.UUID = result.scalar_one()
        return wallet_id


async def _world(client: httpx.AsyncClient, engine: AsyncEngine, merchant_leg_first: bool) -> World:
    """A merchant with one product (20.00, 3 units) and a buyer holding 50.00, the buyer's wallet
    id on the asked-for side of the merchant's: pairs are registered until one is (each pair has
    an even chance; the unused ones stay, without products or money)."""
    for _ in range(40):
        merchant = await register(client, role="MERCHANT")
        buyer = await register(client)
        merchant_wallet = await _wallet_id(engine, merchant)
        buyer_wallet = await _wallet_id(engine, buyer)
        if (merchant_wallet < buyer_wallet) == merchant_leg_first:
            product = await create_product(client, merchant, price="20.00", units=UNITS)
            await deposit(client, buyer, "50.00")
            return World(merchant, buyer, uuid.UUID(product["id"]), merchant_wallet, buyer_wallet)
    raise AssertionError("40 pairs, and no buyer's wallet id on the asked-for side")


async def _state(conn: AsyncConnection) -> State:
    """Every row of every table, in primary-key order; ledger rows without their random id, in
    (wallet, seq) order."""
    state: State = {}
    for table in metadata.sorted_tables:
        if table is wallet_transactions:
            columns = [c for c in table.c if c.name != "id"]
            order = [table.c.wallet_id, table.c.seq]
        else:
            columns, order = list(table.c), list(table.primary_key.columns)
        result = await conn.execute(sa.select(*columns).order_by(*order))
        state[table.name] = [dict(row) for row in result.mappings()]
    return state


async def _read_state(engine: AsyncEngine) -> State:
    async with engine.connect() as conn:
        return await _state(conn)


@dataclass(frozen=True)
class Outcome:
    made: Purchase | None
    error: Exception | None
    state: State  # the tables as this path's transaction left them


async def _run(engine: AsyncEngine, path: PurchasePath, request: PurchaseRequest) -> Outcome:
    """`path` in a transaction of its own, always rolled back: on success the tables are read
    inside it first; on a refusal they are read afterwards (what the path left: nothing)."""
    async with engine.connect() as conn:
        tx = await conn.begin()
        try:
            made = await path(conn, request)
        except (PurchaseRefused, DomainError) as exc:
            await tx.rollback()
            return Outcome(None, exc, await _read_state(engine))
        try:
            return Outcome(made, None, await _state(conn))
        finally:
            await tx.rollback()


def _request(world: World, scenario: Scenario) -> PurchaseRequest:
    who = world.merchant if scenario.who == "merchant" else world.buyer
    return PurchaseRequest(
        order_id=uuid.uuid4(),
        buyer_id=uuid.UUID(who.id),
        product_id=world.product_id if scenario.product == "known" else uuid.uuid4(),
        quantity=scenario.quantity,
        idempotency_key=scenario.key,
        now=utcnow(),
    )


def _by_id(state: State, table: str) -> dict[Any, dict[str, Any]]:
    return {row["id"]: row for row in state[table]}


@pytest.mark.parametrize(
    "merchant_leg_first", [False, True], ids=["buyer_leg_first", "merchant_leg_first"]
)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_statement_and_steps_agree(
    client: httpx.AsyncClient, app: FastAPI, scenario: Scenario, merchant_leg_first: bool
) -> None:
    engine: AsyncEngine = app.state.context.db.engine
    world = await _world(client, engine, merchant_leg_first)
    async with engine.begin() as conn:
        await scenario.setup(conn, world)
    before = await _read_state(engine)
    request = _request(world, scenario)

    statement = await _run(engine, purchase_statement.purchase, request)
    assert await _read_state(engine) == before  # rolled back: the steps start from the same rows
    steps = await _run(engine, purchase_steps.purchase, request)

    refused = scenario.expected(merchant_leg_first)
    if refused is not None:
        assert type(statement.error) is PurchaseRefused, statement.error
        assert type(steps.error) is refused, repr(steps.error)
        assert statement.state == before
        assert steps.state == before
        return

    assert statement.error is None, repr(statement.error)
    assert steps.error is None, repr(steps.error)
    assert statement.made is not None
    assert steps.made is not None
    # The statement returns its wallets in no particular order; the steps in wallet-id order.
    assert [w.id for w in steps.made.wallets] == sorted([world.buyer_wallet, world.merchant_wallet])
    assert steps.made.order == statement.made.order
    assert steps.made.product_version == statement.made.product_version
    assert steps.made.wallets == sorted(statement.made.wallets, key=lambda w: w.id)
    assert steps.state == statement.state

    # Not vacuous: the purchase was made, as the request asked.
    order = steps.made.order
    assert (order.id, order.status, order.quantity) == (
        request.order_id,
        OrderStatus.COMPLETED,
        request.quantity,
    )
    assert order.amount == PRICE * request.quantity
    wallets_before = _by_id(before, "wallets")
    wallets_after = _by_id(steps.state, "wallets")
    assert wallets_after[world.buyer_wallet]["balance"] == (
        wallets_before[world.buyer_wallet]["balance"] - order.amount
    )
    assert wallets_after[world.merchant_wallet]["balance"] == (
        wallets_before[world.merchant_wallet]["balance"] + order.amount
    )
    assert _by_id(steps.state, "orders")[order.id]["idempotency_key"] == request.idempotency_key
    assert len(steps.state["wallet_transactions"]) == len(before["wallet_transactions"]) + 2
