"""invariants 2 and 5 over products: stock is never negative, and every unit a merchant
stocked is available, reserved or sold."""

from __future__ import annotations

import uuid

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.service import run_audit
from payflow.products import cache, stock
from payflow.products.models import products
from tests.db_helpers import with_conn
from tests.products.support import context, patch
from tests.support import create_product, deposit, register


async def test_stock_is_accounted_for_after_creates_edits_and_sales(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ctx = context(app)
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    first = await create_product(client, merchant, units=10)
    second = await create_product(client, merchant, units=0)
    await patch(client, merchant, first["id"], {"availableUnits": 12, "price": "4.00"})
    await patch(client, merchant, second["id"], {"availableUnits": 3})

    async def reserve(conn: AsyncConnection) -> stock.StockedProduct:
        return await stock.take_for_buyer(
            conn, uuid.UUID(first["id"]), 2, uuid.UUID(buyer.id), reserve=True
        )

    reserved = await ctx.db.transaction(with_conn(reserve))
    await cache.invalidate(ctx, [(reserved.id, reserved.version)])
    await patch(client, merchant, first["id"], {"availableUnits": 1})
    await client.delete(f"/products/{second['id']}", headers=merchant.headers)

    await deposit(client, buyer, "10.00")
    purchase = await client.post(
        "/orders",
        json={"productId": first["id"], "paymentMethod": "WALLET", "quantity": 1},
        headers={**buyer.headers, "Idempotency-Key": "audit-sale"},
    )
    assert purchase.status_code == 201, purchase.text

    report = await run_audit(ctx.db)
    assert report.ok, report.as_text()


async def test_the_audit_names_a_product_whose_stock_does_not_add_up(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ctx = context(app)
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=5)
    product_id = uuid.UUID(product["id"])

    async def conjure_units(conn: AsyncConnection) -> None:  # stock no adjustment accounts for
        await conn.execute(
            sa.update(products).where(products.c.id == product_id).values(available_units=7)
        )

    await ctx.db.transaction(with_conn(conjure_units))
    report = await run_audit(ctx.db)
    assert not report.ok
    assert [(v.invariant, v.subject) for v in report.violations] == [(5, f"product {product_id}")]
    assert "7 available + 0 reserved + 0 sold != 5 stocked" in report.violations[0].detail


async def test_the_audit_names_negative_stock(client: httpx.AsyncClient, app: FastAPI) -> None:
    ctx = context(app)
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=0)
    product_id = uuid.UUID(product["id"])

    async def break_stock(conn: AsyncConnection) -> None:
        if conn.dialect.name == "postgresql":  # the CHECK constraint has to be lifted to do it
            await conn.exec_driver_sql(
                "ALTER TABLE products DROP CONSTRAINT ck_products_reserved_non_negative"
            )
        else:
            await conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        await conn.execute(
            sa.update(products)
            .where(products.c.id == product_id)
            .values(available_units=1, reserved_units=-1)
        )

    await ctx.db.transaction(with_conn(break_stock))
    report = await run_audit(ctx.db)
    assert [(v.invariant, v.subject) for v in report.violations] == [(2, f"product {product_id}")]
    assert "1 available, -1 reserved" in report.violations[0].detail
