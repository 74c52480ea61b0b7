"""Every SQL statement about orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.tables import utcnow
from payflow.orders import state
from payflow.orders.models import OrderStatus, PaymentMethod, orders
from payflow.orders.records import Order
from payflow.products.models import products
from payflow.wallets.models import wallets


def _order(row: RowMapping) -> Order:
    return Order(
        id=row["id"],
        user_id=row["user_id"],
        product_id=row["product_id"],
        merchant_id=row["merchant_id"],
        quantity=row["quantity"],
        unit_price=row["unit_price"],
        amount=row["amount"],
        currency=row["currency"],
        payment_method=PaymentMethod(row["payment_method"]),
        status=OrderStatus(row["status"]),
        stripe_session_id=row["stripe_session_id"],
        stripe_payment_intent_id=row["stripe_payment_intent_id"],
        reservation_expires_at=row["reservation_expires_at"],
        completed_at=row["completed_at"],
        failed_at=row["failed_at"],
        failure_reason=row["failure_reason"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_order(
    conn: AsyncConnection,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    product_id: uuid.UUID,
    merchant_id: uuid.UUID,
    quantity: int,
    unit_price: int,
    currency: str,
    payment_method: PaymentMethod,
    status: OrderStatus,
    idempotency_key: str | None,
    now: datetime,
    failure_reason: str | None = None,
    reservation_expires_at: datetime | None = None,
) -> Order:
    assert status in state.INITIAL  # noqa: S101 - a programming error, not a request error
    values: dict[str, Any] = {
        "id": order_id,
        "user_id": user_id,
        "product_id": product_id,
        "merchant_id": merchant_id,
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": unit_price * quantity,
        "currency": currency,
        "payment_method": payment_method.value,
        "status": status.value,
        "stripe_session_id": None,
        "stripe_payment_intent_id": None,
        "idempotency_key": idempotency_key,
        "reservation_expires_at": reservation_expires_at,
        "completed_at": now if status is OrderStatus.COMPLETED else None,
        "failed_at": now if status is OrderStatus.FAILED else None,
        "failure_reason": failure_reason,
        "metadata": None,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(sa.insert(orders).values(**values))
    return _order(values)  # type: ignore[arg-type]


async def transition(
    conn: AsyncConnection,
    order_id: uuid.UUID,
    target: OrderStatus,
    *,
    now: datetime | None = None,
    only_from: frozenset[OrderStatus] | None = None,
    **fields: Any,
) -> Order | None:
    """Move the order to `target` if the state machine allows it from its current status (or
    from `only_from`, a subset); None when it does not. Atomic: of two concurrent transitions
    from the same status, one wins."""
    now = now or utcnow()
    sources = (
        state.sources_of(target) if only_from is None else only_from & state.sources_of(target)
    )
    values: dict[str, Any] = {"status": target.value, "updated_at": now, **fields}
    if target is OrderStatus.COMPLETED:
        values.setdefault("completed_at", now)
    if target is OrderStatus.FAILED:
        values.setdefault("failed_at", now)
    result = await conn.execute(
        sa.update(orders)
        .where(orders.c.id == order_id, orders.c.status.in_([s.value for s in sources]))
        .values(**values)
        .returning(*orders.c)
    )
    row = result.mappings().first()
    return _order(row) if row else None


async def get(conn: AsyncConnection, order_id: uuid.UUID) -> Order | None:
    row = (await conn.execute(sa.select(orders).where(orders.c.id == order_id))).mappings().first()
    return _order(row) if row else None


async def list_orders(
    conn: AsyncConnection,
    *,
    buyer_id: uuid.UUID | None = None,
    merchant_id: uuid.UUID | None = None,
    status: OrderStatus | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Order]:
    """Newest first, keyset on (created_at, id)."""
    query = sa.select(orders)
    if buyer_id is not None:
        query = query.where(orders.c.user_id == buyer_id)
    if merchant_id is not None:
        query = query.where(orders.c.merchant_id == merchant_id)
    if status is not None:
        query = query.where(orders.c.status == status.value)
    if after is not None:
        query = query.where(sa.tuple_(orders.c.created_at, orders.c.id) < sa.tuple_(*after))
    query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
    return [_order(row) for row in (await conn.execute(query)).mappings()]


async def purchase_parties(
    conn: AsyncConnection, product_id: uuid.UUID, buyer_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID] | None:
    """(merchant id, buyer's wallet id, merchant's wallet id) for a purchase, read without locks:
    these never change once created. None if the product does not exist."""
    buyer_wallet = wallets.alias("buyer_wallet")
    merchant_wallet = wallets.alias("merchant_wallet")
    row = (
        await conn.execute(
            sa.select(products.c.merchant_id, buyer_wallet.c.id, merchant_wallet.c.id)
            .select_from(products)
            .join(merchant_wallet, merchant_wallet.c.user_id == products.c.merchant_id)
            .join(buyer_wallet, buyer_wallet.c.user_id == buyer_id)
            .where(products.c.id == product_id)
        )
    ).first()
    return (row[0], row[1], row[2]) if row else None


async def product_terms(
    conn: AsyncConnection, product_id: uuid.UUID
) -> tuple[uuid.UUID, int, str] | None:
    """(merchant id, price, currency) of a product, for recording a failed order."""
    row = (
        await conn.execute(
            sa.select(products.c.merchant_id, products.c.price, products.c.currency).where(
                products.c.id == product_id
            )
        )
    ).first()
    return (row[0], row[1], row[2]) if row else None


async def lock(conn: AsyncConnection, order_id: uuid.UUID) -> Order | None:
    """The order, row-locked until the transaction ends (the first lock of the global order)."""
    query = sa.select(orders).where(orders.c.id == order_id).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return _order(row) if row else None


async def attach_session(
    conn: AsyncConnection, order_id: uuid.UUID, session_id: str, expires_at: datetime
) -> Order:
    result = await conn.execute(
        sa.update(orders)
        .where(orders.c.id == order_id)
        .values(
            stripe_session_id=session_id, reservation_expires_at=expires_at, updated_at=utcnow()
        )
        .returning(*orders.c)
    )
    return _order(result.mappings().one())


async def find_by_session(conn: AsyncConnection, session_id: str) -> Order | None:
    query = sa.select(orders).where(orders.c.stripe_session_id == session_id)
    row = (await conn.execute(query)).mappings().first()
    return _order(row) if row else None


async def expired_reservations(conn: AsyncConnection, now: datetime, limit: int) -> list[uuid.UUID]:
    """PENDING gateway orders whose checkout has expired (oldest first)."""
    rows = await conn.execute(
        sa.select(orders.c.id)
        .where(orders.c.status == OrderStatus.PENDING.value, orders.c.reservation_expires_at < now)
        .order_by(orders.c.reservation_expires_at)
        .limit(limit)
    )
    return [row.id for row in rows]


async def forget_idempotency_key(conn: AsyncConnection, order_id: uuid.UUID) -> None:
    await conn.execute(
        sa.update(orders).where(orders.c.id == order_id).values(idempotency_key=None)
    )
