"""The one-statement wallet purchase on PostgreSQL (orders/purchase_statement.py).

It must do exactly what the step-by-step purchase does, in one round trip, and when any rule says
no it must write nothing at all, so that the step-by-step path can say why. The API-level rules
(every refusal code, FAILED orders, idempotency) are covered for both back ends by
test_wallet_purchase.py; here the statement itself is checked.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.order_checks import check_order_ledger
from payflow.audit.service import run_audit
from payflow.core.money import MAX_MINOR_UNITS
from payflow.core.tables import utcnow
from payflow.orders import purchase_statement
from payflow.wiring import AppContext
from tests.db_helpers import postgres_only as postgres_on
from tests.db_helpers import with_conn
from tests.support import Account, create_product, deposit, register

postgres_only = postgres_on("backend")

_SNAPSHOT = """
SELECT (SELECT json_agg(p ORDER BY p.id) FROM products p)::text,
       (SELECT json_agg(w ORDER BY w.id) FROM wallets w)::text,
       (SELECT count(*) FROM wallet_transactions), (SELECT count(*) FROM orders)
"""


async def _snapshot(ctx: AppContext) -> tuple[Any, ...]:
    async def read(conn: AsyncConnection) -> tuple[Any, ...]:
        return tuple((await conn.exec_driver_sql(_SNAPSHOT)).one())

    return await ctx.db.read(read)


async def _sql(ctx: AppContext, statement: str, **params: Any) -> None:
    async def run(conn: AsyncConnection) -> None:
        await conn.execute(sa.text(statement), params)

    await ctx.db.transaction(with_conn(run))


def _request(buyer: Account, product_id: str, quantity: int) -> purchase_statement.PurchaseRequest:
    return purchase_statement.PurchaseRequest(
        order_id=uuid.uuid4(),
        buyer_id=uuid.UUID(buyer.id),
        product_id=uuid.UUID(product_id),
        quantity=quantity,
        idempotency_key=None,
        now=utcnow(),
    )


async def _buy(
    ctx: AppContext, buyer: Account, product_id: str, quantity: int = 1, *, alone: bool = True
) -> purchase_statement.Purchase:
    """On its own straight on asyncpg (unkeyed requests), or inside a SQLAlchemy transaction
    (keyed requests, beside the idempotency record)."""
    request = _request(buyer, product_id, quantity)
    if alone:
        assert ctx.db.driver is not None
        return await purchase_statement.purchase_alone(ctx.db.driver, request)

    async def run(conn: AsyncConnection) -> purchase_statement.Purchase:
        return await purchase_statement.purchase(conn, request)

    return await ctx.db.transaction(with_conn(run))


async def _parties(client: httpx.AsyncClient) -> tuple[Account, Account, dict[str, Any]]:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "50.00")
    product = await create_product(client, merchant, price="20.00", units=3)
    return merchant, buyer, product


@postgres_only
@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in_transaction"])
async def test_the_statement_makes_the_whole_purchase(
    client: httpx.AsyncClient, app: FastAPI, alone: bool
) -> None:
    ctx: AppContext = app.state.context
    merchant, buyer, product = await _parties(client)

    made = await _buy(ctx, buyer, product["id"], quantity=2, alone=alone)

    assert made.order.amount == 4000
    assert made.order.unit_price == 2000
    assert str(made.order.merchant_id) == merchant.id
    assert made.product_version == product["version"] + 1
    by_user = {str(w.user_id): w for w in made.wallets}
    assert by_user[buyer.id].balance == 1000
    assert by_user[merchant.id].balance == 4000

    async def rows(conn: AsyncConnection) -> list[Any]:
        result = await conn.execute(
            sa.text(
                "SELECT t.type, t.amount, t.balance_before, t.balance_after, t.seq, w.version,"
                " t.reference_id FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id"
                " WHERE t.reference_type = 'ORDER' ORDER BY t.type"
            )
        )
        return list(result.all())

    earning, payment = await ctx.db.read(rows)
    assert earning[:4] == ("EARNING", 4000, 0, 4000)
    assert earning[4] == earning[5]
    assert payment[:4] == ("PAYMENT", 4000, 5000, 1000)
    assert payment[4] == payment[5]
    assert earning.reference_id == payment.reference_id == made.order.id
    response = await client.get(f"/products/{product['id']}")
    assert response.json()["availableUnits"] == 1
    report = await run_audit(ctx.db)
    assert report.ok, report.as_text()
    assert await ctx.db.read(check_order_ledger) == []


# Each puts one rule in the way and returns (quantity, who buys).
Setup = Callable[[AppContext, Account, Account, dict[str, Any]], Awaitable[tuple[int, Account]]]


async def _out_of_stock(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    return 4, b  # 3 in stock


async def _insufficient_funds(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    return 3, b  # 60.00 against 50.00


async def _buyer_locked(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    await _sql(ctx, "UPDATE wallets SET is_locked = true WHERE user_id = :u", u=uuid.UUID(b.id))
    return 1, b


async def _merchant_locked(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    await _sql(ctx, "UPDATE wallets SET is_locked = true WHERE user_id = :u", u=uuid.UUID(m.id))
    return 1, b


async def _both_wallets_locked(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    # Stock is taken, then no wallet moves at all: the statement must still undo the stock.
    await _sql(
        ctx,
        "UPDATE wallets SET is_locked = true WHERE user_id IN (:b, :m)",
        b=uuid.UUID(b.id),
        m=uuid.UUID(m.id),
    )
    return 1, b


async def _merchant_full(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    await _sql(
        ctx,
        "UPDATE wallets SET balance = :full WHERE user_id = :u",
        full=MAX_MINOR_UNITS - 1999,
        u=uuid.UUID(m.id),
    )
    return 1, b


async def _inactive(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    await _sql(ctx, "UPDATE products SET is_active = false WHERE id = :p", p=uuid.UUID(p["id"]))
    return 1, b


async def _deleted(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    await _sql(ctx, "UPDATE products SET deleted_at = now() WHERE id = :p", p=uuid.UUID(p["id"]))
    return 1, b


async def _own_product(
    ctx: AppContext, m: Account, b: Account, p: dict[str, Any]
) -> tuple[int, Account]:
    # The merchant, holding money, buys its own product.
    await _sql(ctx, "UPDATE wallets SET balance = 100000 WHERE user_id = :u", u=uuid.UUID(m.id))
    return 1, m


@postgres_only
@pytest.mark.parametrize(
    "setup",
    [
        _out_of_stock,
        _insufficient_funds,
        _buyer_locked,
        _merchant_locked,
        _both_wallets_locked,
        _merchant_full,
        _inactive,
        _deleted,
        _own_product,
    ],
)
@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in_transaction"])
async def test_a_refused_statement_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI, setup: Setup, alone: bool
) -> None:
    ctx: AppContext = app.state.context
    merchant, buyer, product = await _parties(client)
    quantity, who = await setup(ctx, merchant, buyer, product)
    before = await _snapshot(ctx)

    with pytest.raises(purchase_statement.PurchaseRefused):
        await _buy(ctx, who, product["id"], quantity, alone=alone)

    assert await _snapshot(ctx) == before


@postgres_only
async def test_an_unknown_product_is_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    ctx: AppContext = app.state.context
    _, buyer, _ = await _parties(client)
    before = await _snapshot(ctx)
    with pytest.raises(purchase_statement.PurchaseRefused):
        await _buy(ctx, buyer, str(uuid.uuid4()))
    assert await _snapshot(ctx) == before


@postgres_only
async def test_a_purchase_over_http_is_two_statements_in_all(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user behind the token, then the purchase: both straight on the driver, no BEGIN,
    no COMMIT, nothing through SQLAlchemy."""
    ctx: AppContext = app.state.context
    _, buyer, product = await _parties(client)
    driver = ctx.db.driver
    assert driver is not None
    through_driver: list[str] = []
    through_sqlalchemy: list[str] = []
    fetch = driver.fetch

    async def observed_fetch(sql: str, *args: Any, write: bool) -> list[Any]:
        through_driver.append(" ".join(sql.split())[:40])
        return await fetch(sql, *args, write=write)

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        through_sqlalchemy.append(statement)

    monkeypatch.setattr(driver, "fetch", observed_fetch)
    engine = ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = await client.post(
            "/orders",
            json={"productId": product["id"], "paymentMethod": "WALLET"},
            headers=buyer.headers,
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert response.status_code == 201, response.text
    assert through_sqlalchemy == []
    assert len(through_driver) == 2, through_driver
    assert through_driver[0].startswith("SELECT id, email")
    assert through_driver[1].startswith("WITH product AS ( UPDATE products")
