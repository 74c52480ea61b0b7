"""`payflow audit` invariants 3-6 on orders: they hold after real traffic and catch forgeries."""

from __future__ import annotations

import uuid

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.service import run_audit
from payflow.orders.models import orders
from payflow.products.models import products
from payflow.wiring import AppContext
from tests.db_helpers import with_conn
from tests.support import create_product, deposit, register


async def _traffic(client: httpx.AsyncClient) -> tuple[str, str]:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant, price="10.00", units=5)
    bought = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET", "quantity": 2},
        headers=buyer.headers,
    )
    assert bought.status_code == 201
    refunded = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=buyer.headers,
    )
    refund = await client.post(f"/orders/{refunded.json()['id']}/refund", headers=merchant.headers)
    assert refund.status_code == 200
    return bought.json()["id"], product["id"]


def _violations(report_text: str, invariant: int) -> list[str]:
    return [line for line in report_text.splitlines() if f"invariant {invariant}" in line]


async def test_all_invariants_hold_after_purchases_and_refunds(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await _traffic(client)
    ctx: AppContext = app.state.context
    report = await run_audit(ctx.db)
    assert report.ok, report.as_text()
    assert {r.invariant for r in report.results} == {1, 2, 3, 4, 5, 6, 7}


async def test_an_order_without_its_ledger_rows_is_named(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    order_id, _ = await _traffic(client)
    ctx: AppContext = app.state.context

    async def forge(conn: AsyncConnection) -> None:
        # A COMPLETED order nobody paid for: a copy of a real one under a new id.
        row = (
            (await conn.execute(sa.select(orders).where(orders.c.id == uuid.UUID(order_id))))
            .mappings()
            .one()
        )
        await conn.execute(
            sa.insert(orders).values({**row, "id": uuid.uuid4(), "idempotency_key": None})
        )

    await ctx.db.transaction(with_conn(forge))
    report = await run_audit(ctx.db)
    assert not report.ok
    assert [v.invariant for v in report.violations] == [4, 5]
    assert "0 PAYMENT, 0 EARNING" in report.violations[0].detail


async def test_stock_changed_behind_payflows_back_is_named(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, product_id = await _traffic(client)
    ctx: AppContext = app.state.context

    async def tamper(conn: AsyncConnection) -> None:
        await conn.execute(
            sa.update(products)
            .where(products.c.id == uuid.UUID(product_id))
            .values(available_units=products.c.available_units + 7)
        )

    await ctx.db.transaction(with_conn(tamper))
    report = await run_audit(ctx.db)
    assert [v.invariant for v in report.violations] == [5]
    assert product_id in report.violations[0].subject


async def test_two_orders_on_one_checkout_session_are_named(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    order_id, _ = await _traffic(client)
    ctx: AppContext = app.state.context

    async def share(conn: AsyncConnection) -> None:
        await conn.execute(
            sa.update(orders)
            .where(orders.c.id == uuid.UUID(order_id))
            .values(stripe_payment_intent_id="pi_shared")
        )
        row = (
            (await conn.execute(sa.select(orders).where(orders.c.id == uuid.UUID(order_id))))
            .mappings()
            .one()
        )
        await conn.execute(
            sa.insert(orders).values(
                {**row, "id": uuid.uuid4(), "idempotency_key": None, "status": "FAILED"}
            )
        )

    await ctx.db.transaction(with_conn(share))
    report = await run_audit(ctx.db)
    assert any(v.invariant == 6 and "pi_shared" in v.subject for v in report.violations)
