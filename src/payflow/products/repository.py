"""Every SQL statement about products and merchants' stock adjustments.

Order-side stock movements live in products/stock.py. A merchant's change to a product locks the
row first (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's write transaction already holds the
database's only write lock), so a stock adjustment is computed from the row as it is, sales made
meanwhile included.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.money import Money
from payflow.products.models import products, stock_adjustments
from payflow.products.records import AdjustmentReason, Position, Product

_PRODUCT_COLUMNS = (
    products.c.id,
    products.c.merchant_id,
    products.c.name,
    products.c.description,
    products.c.price,
    products.c.currency,
    products.c.available_units,
    products.c.initial_units,
    products.c.reserved_units,
    products.c.is_active,
    products.c.version,
    products.c.created_at,
    products.c.updated_at,
)
_not_deleted = products.c.deleted_at.is_(None)
# Spelled exactly as the catalogue index's predicate (migration 0003): SQLite uses a partial index
# only when the query repeats the index's WHERE terms, and SQLAlchemy would write `is_active = 1`.
_on_sale = sa.and_(sa.literal_column("products.is_active"), _not_deleted)
# The escape character of LIKE patterns built from a client's search text.
_LIKE_ESCAPE = "\\"


def _product(row: RowMapping) -> Product:
    return Product(
        id=row["id"],
        merchant_id=row["merchant_id"],
        name=row["name"],
        description=row["description"],
        price=row["price"],
        currency=row["currency"],
        available_units=row["available_units"],
        initial_units=row["initial_units"],
        reserved_units=row["reserved_units"],
        is_active=row["is_active"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_product(
    conn: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    name: str,
    description: str | None,
    price: Money,
    units: int,
    now: datetime,
) -> Product:
    result = await conn.execute(
        sa.insert(products)
        .values(
            id=uuid.uuid4(),
            merchant_id=merchant_id,
            name=name,
            description=description,
            price=price.minor,
            currency=price.currency,
            available_units=units,
            initial_units=units,
            reserved_units=0,
            is_active=True,
            version=1,
            created_at=now,
            updated_at=now,
        )
        .returning(*_PRODUCT_COLUMNS)
    )
    return _product(result.mappings().one())


async def insert_adjustment(
    conn: AsyncConnection,
    *,
    product_id: uuid.UUID,
    delta: int,
    reason: AdjustmentReason,
    actor_id: uuid.UUID,
    now: datetime,
) -> None:
    await conn.execute(
        sa.insert(stock_adjustments).values(
            id=uuid.uuid4(),
            product_id=product_id,
            delta=delta,
            reason=reason.value,
            actor_id=actor_id,
            created_at=now,
            updated_at=now,
        )
    )


async def get_live(conn: AsyncConnection, product_id: uuid.UUID) -> Product | None:
    """The product unless it is deleted (inactive ones included)."""
    result = await conn.execute(
        sa.select(*_PRODUCT_COLUMNS).where(products.c.id == product_id, _not_deleted)
    )
    row = result.mappings().first()
    return _product(row) if row else None


async def lock_live(conn: AsyncConnection, product_id: uuid.UUID) -> Product | None:
    """`get_live`, holding the row lock until the transaction ends (SQLite ignores FOR UPDATE:
    its write transactions are already serialised)."""
    result = await conn.execute(
        sa.select(*_PRODUCT_COLUMNS)
        .where(products.c.id == product_id, _not_deleted)
        .with_for_update()
    )
    row = result.mappings().first()
    return _product(row) if row else None


async def update_product(
    conn: AsyncConnection,
    product_id: uuid.UUID,
    *,
    version: int,
    values: dict[str, Any],
    now: datetime,
) -> Product | None:
    """Write `values` over the product at `version`, moving it to the next version."""
    result = await conn.execute(
        sa.update(products)
        .where(products.c.id == product_id, products.c.version == version, _not_deleted)
        .values(**values, version=products.c.version + 1, updated_at=now)
        .returning(*_PRODUCT_COLUMNS)
    )
    row = result.mappings().first()
    return _product(row) if row else None


async def soft_delete(
    conn: AsyncConnection, product_id: uuid.UUID, now: datetime
) -> Product | None:
    """Mark the product deleted (and off sale); None when it already was."""
    result = await conn.execute(
        sa.update(products)
        .where(products.c.id == product_id, _not_deleted)
        .values(
            deleted_at=now,
            is_active=False,
            version=products.c.version + 1,
            updated_at=now,
        )
        .returning(*_PRODUCT_COLUMNS)
    )
    row = result.mappings().first()
    return _product(row) if row else None


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with the client's wildcards taken literally."""
    escaped = (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


async def list_catalogue(
    conn: AsyncConnection,
    *,
    limit: int,
    after: Position | None,
    merchant_id: uuid.UUID | None,
    q: str | None,
) -> list[Product]:
    """Up to `limit` products on sale, newest first, after `after`."""
    conditions: list[sa.ColumnElement[bool]] = [_on_sale]
    if merchant_id is not None:
        conditions.append(products.c.merchant_id == merchant_id)
    if q is not None:
        conditions.append(
            sa.func.lower(products.c.name).like(sa.func.lower(like_pattern(q)), escape=_LIKE_ESCAPE)
        )
    return await _newest_first(conn, conditions, limit=limit, after=after)


async def list_by_merchant(
    conn: AsyncConnection, merchant_id: uuid.UUID, *, limit: int, after: Position | None
) -> list[Product]:
    """Up to `limit` of the merchant's products that are not deleted, newest first."""
    conditions = [products.c.merchant_id == merchant_id, _not_deleted]
    return await _newest_first(conn, conditions, limit=limit, after=after)


async def _newest_first(
    conn: AsyncConnection,
    conditions: list[sa.ColumnElement[bool]],
    *,
    limit: int,
    after: Position | None,
) -> list[Product]:
    if after is not None:
        # Keyset: strictly older than the last row served, ties on created_at broken by id. Rows
        # created after paging began sort before the first page, so they never shift a page. A row
        # comparison, so that both databases seek into the (…, created_at, id) index.
        position = sa.tuple_(products.c.created_at, products.c.id)
        conditions = [*conditions, position < (after.created_at, after.id)]
    query = (
        sa.select(*_PRODUCT_COLUMNS)
        .where(*conditions)
        .order_by(products.c.created_at.desc(), products.c.id.desc())
        .limit(limit)
    )
    result = await conn.execute(query)
    return [_product(row) for row in result.mappings()]
