"""Helpers for the products tests: what a merchant or a shopper does, and what the database holds."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.products.models import stock_adjustments
from payflow.wiring import AppContext
from tests.support import Account


def context(app: FastAPI) -> AppContext:
    ctx: AppContext = app.state.context
    return ctx


async def patch(
    client: httpx.AsyncClient,
    merchant: Account,
    product_id: str,
    body: dict[str, Any],
    **headers: str,
) -> httpx.Response:
    return await client.patch(
        f"/products/{product_id}", json=body, headers={**merchant.headers, **headers}
    )


async def read(
    client: httpx.AsyncClient, product_id: str, viewer: Account | None = None
) -> httpx.Response:
    return await client.get(f"/products/{product_id}", headers=viewer.headers if viewer else {})


async def catalogue(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/products", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def catalogue_ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    return [product["id"] for product in (await catalogue(client, **params))["data"]]


async def adjustments(app: FastAPI, product_id: str) -> list[tuple[int, str, str]]:
    """The product's stock adjustments, oldest first: (delta, reason, actor id)."""

    async def work(conn: AsyncConnection) -> list[tuple[int, str, str]]:
        rows = await conn.execute(
            sa.select(
                stock_adjustments.c.delta,
                stock_adjustments.c.reason,
                stock_adjustments.c.actor_id,
            )
            .where(stock_adjustments.c.product_id == uuid.UUID(product_id))
            .order_by(stock_adjustments.c.created_at)
        )
        return [(row.delta, row.reason, str(row.actor_id)) for row in rows]

    return await context(app).db.read(work)
