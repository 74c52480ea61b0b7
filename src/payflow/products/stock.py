"""Every SQL statement that moves stock for an order: take, reserve, release, sell, return.

Each is one conditional UPDATE … RETURNING on the product row: it takes the row lock, checks, and
writes in one statement, and bumps the product's version (every change does). Units only move
between `available_units`, `reserved_units` and orders; merchants add units through adjustments.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.errors import NotFound
from payflow.core.tables import utcnow
from payflow.products.errors import OutOfStock, ProductUnavailable
from payflow.products.models import products


@dataclass(frozen=True, slots=True)
class StockedProduct:
    """What an order needs to know about the product whose stock it just moved."""

    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    price: int
    currency: str
    version: int


_RETURNING = (
    products.c.id,
    products.c.merchant_id,
    products.c.name,
    products.c.price,
    products.c.currency,
    products.c.version,
)
_live = sa.and_(products.c.deleted_at.is_(None), products.c.is_active.is_(True))


def _stocked(row: sa.Row[Any]) -> StockedProduct:
    return StockedProduct(
        id=row.id,
        merchant_id=row.merchant_id,
        name=row.name,
        price=row.price,
        currency=row.currency,
        version=row.version,
    )


async def _move(
    conn: AsyncConnection,
    product_id: uuid.UUID,
    *,
    available: int,
    reserved: int,
    conditions: list[sa.ColumnElement[bool]],
    now: datetime | None,
) -> StockedProduct | None:
    result = await conn.execute(
        sa.update(products)
        .where(products.c.id == product_id, *conditions)
        .values(
            available_units=products.c.available_units + available,
            reserved_units=products.c.reserved_units + reserved,
            version=products.c.version + 1,
            updated_at=now or utcnow(),
        )
        .returning(*_RETURNING)
    )
    row = result.first()
    return _stocked(row) if row else None


async def take_for_buyer(
    conn: AsyncConnection,
    product_id: uuid.UUID,
    quantity: int,
    buyer_id: uuid.UUID,
    *,
    reserve: bool,
    now: datetime | None = None,
) -> StockedProduct:
    """Take `quantity` units for a buyer: sold at once (wallet) or reserved (gateway)."""
    moved = await _move(
        conn,
        product_id,
        available=-quantity,
        reserved=quantity if reserve else 0,
        conditions=[
            _live,
            products.c.merchant_id != buyer_id,
            products.c.available_units >= quantity,
        ],
        now=now,
    )
    if moved is None:
        raise await _refusal(conn, product_id, buyer_id)
    return moved


async def _refusal(conn: AsyncConnection, product_id: uuid.UUID, buyer_id: uuid.UUID) -> Exception:
    """Why a buyer could not take stock (read only on that failure path)."""
    row = (
        await conn.execute(
            sa.select(products.c.merchant_id, products.c.is_active, products.c.deleted_at).where(
                products.c.id == product_id
            )
        )
    ).first()
    if row is None or row.deleted_at is not None:
        return NotFound("Product not found")
    if not row.is_active:
        return ProductUnavailable("This product is not for sale")
    if row.merchant_id == buyer_id:
        return ProductUnavailable("Merchants cannot buy their own products")
    return OutOfStock("Not enough units in stock")


async def release_reservation(
    conn: AsyncConnection, product_id: uuid.UUID, quantity: int, now: datetime | None = None
) -> StockedProduct:
    """Reserved units go back on sale (a gateway order cancelled, expired or failed)."""
    moved = await _move(
        conn,
        product_id,
        available=quantity,
        reserved=-quantity,
        conditions=[products.c.reserved_units >= quantity],
        now=now,
    )
    if moved is None:
        raise RuntimeError(f"product {product_id} holds fewer than {quantity} reserved units")
    return moved


async def sell_reservation(
    conn: AsyncConnection, product_id: uuid.UUID, quantity: int, now: datetime | None = None
) -> StockedProduct:
    """Reserved units become sold (a gateway order paid)."""
    moved = await _move(
        conn,
        product_id,
        available=0,
        reserved=-quantity,
        conditions=[products.c.reserved_units >= quantity],
        now=now,
    )
    if moved is None:
        raise RuntimeError(f"product {product_id} holds fewer than {quantity} reserved units")
    return moved


async def take_again(
    conn: AsyncConnection, product_id: uuid.UUID, quantity: int, now: datetime | None = None
) -> StockedProduct | None:
    """Sell units straight from stock for a payment whose reservation was already released;
    None when they are gone. Deleted or inactive products still honour a payment made."""
    return await _move(
        conn,
        product_id,
        available=-quantity,
        reserved=0,
        conditions=[products.c.available_units >= quantity],
        now=now,
    )


async def return_units(
    conn: AsyncConnection, product_id: uuid.UUID, quantity: int, now: datetime | None = None
) -> StockedProduct:
    """Sold units go back on sale (a refund)."""
    moved = await _move(conn, product_id, available=quantity, reserved=0, conditions=[], now=now)
    if moved is None:
        raise NotFound("Product not found")
    return moved
