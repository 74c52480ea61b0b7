"""Every SQL statement about orders."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.tables import utcnow
from payflow.orders import state
from payflow.orders.errors import IdempotencyKeyHeldByOrder
from payflow.orders.models import OrderStatus, PaymentMethod, orders
from payflow.orders.records import Order
from payflow.products.models import products
from payflow.wallets.models import wallets

KEY_CONSTRAINT = "uq_orders_user_id_idempotency_key"
# SQLite names the columns, not the constraint.
_SQLITE_KEY_VIOLATION = "UNIQUE constraint failed: orders.user_id, orders.idempotency_key"
# pg_advisory_xact_lock(namespace, key): the namespace keeps these locks apart from any other
# advisory lock; two-int keys never collide with one-bigint keys.
_BUYER_RESERVATIONS_LOCK = 0x70660001


# The metadata key of a cancellation under way (request_cancel).
CANCEL_REQUESTED = "cancelRequested"


def is_key_held(exc: DBAPIError) -> bool:
    """Whether an INSERT into orders failed only because another order of the same buyer holds
    its idempotency key (and not for any other integrity reason)."""
    if not isinstance(exc, IntegrityError):
        return False
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        if getattr(candidate, "constraint_name", None) == KEY_CONSTRAINT:
            return True
    return _SQLITE_KEY_VIOLATION in str(exc.orig)


def key_held_error() -> IdempotencyKeyHeldByOrder:
    return IdempotencyKeyHeldByOrder(
        "An earlier order still holds this Idempotency-Key; retry later or use a new key"
    )


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
    try:
        await conn.execute(sa.insert(orders).values(**values))
    except IntegrityError as exc:
        # Only reachable when the key's idempotency record is gone while an order still holds
        # the key (records are released and pruned together with the order's key, jobs/
        # retention.py): a conflict to retry, never a 500.
        if is_key_held(exc):
            raise key_held_error() from exc
        raise
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


async def product_name(conn: AsyncConnection, product_id: uuid.UUID) -> str | None:
    """The product's name, deleted or not (what an order was for)."""
    name = await conn.scalar(sa.select(products.c.name).where(products.c.id == product_id))
    return None if name is None else str(name)


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


async def request_cancel(conn: AsyncConnection, order_id: uuid.UUID, reason: str | None) -> None:
    """Record on a PENDING order why it is being cancelled, before its checkout is expired: the
    gateway's `expired` event may then overtake the cancellation, and it must say the same.
    None withdraws the request (the checkout could not be expired)."""
    order = await lock(conn, order_id)
    if order is None or order.status is not OrderStatus.PENDING:
        return
    metadata = {k: v for k, v in (order.metadata or {}).items() if k != CANCEL_REQUESTED}
    if reason is not None:
        metadata[CANCEL_REQUESTED] = reason
    await conn.execute(
        sa.update(orders)
        .where(orders.c.id == order_id)
        .values(metadata=metadata or None, updated_at=utcnow())
    )


async def note_failure(conn: AsyncConnection, order_id: uuid.UUID, note: str) -> None:
    """Add to an order's failure reason what went wrong after its last transition (a refund the
    gateway refused), keeping the reason it already had."""
    current = orders.c.failure_reason
    await conn.execute(
        sa.update(orders)
        .where(orders.c.id == order_id)
        .values(
            failure_reason=sa.case(
                (current.is_(None), note), else_=current + sa.literal("; ") + sa.literal(note)
            ),
            updated_at=utcnow(),
        )
    )


async def clear_idempotency_keys(
    conn: AsyncConnection, held: Sequence[tuple[uuid.UUID, str]]
) -> int:
    """Release (buyer id, key) pairs from the orders holding them, so that each key can place a
    new order: called in the transaction that deletes the keys' idempotency records."""
    if not held:
        return 0
    result = await conn.execute(
        sa.update(orders)
        .where(sa.tuple_(orders.c.user_id, orders.c.idempotency_key).in_(list(held)))
        .values(idempotency_key=None)
    )
    return result.rowcount


async def serialize_buyer_reservations(conn: AsyncConnection, buyer_id: uuid.UUID) -> None:
    """Hold, until the transaction ends, a lock that one buyer's reservations take one at a time,
    so that counting them and adding one is exact. PostgreSQL only: SQLite's single writer (BEGIN
    IMMEDIATE) already serialises them. Taken before the product row lock, and by nothing else,
    so it cannot take part in a deadlock."""
    if conn.dialect.name != "postgresql":
        return
    key = int.from_bytes(buyer_id.bytes[:4], "big", signed=True)  # collisions only serialise
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_BUYER_RESERVATIONS_LOCK, key)))


async def open_reservations(conn: AsyncConnection, buyer_id: uuid.UUID) -> tuple[int, int]:
    """(orders, units) of the buyer's gateway orders that hold a reservation, all products."""
    row = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(orders.c.quantity), 0)).where(
                orders.c.user_id == buyer_id,
                orders.c.payment_method == PaymentMethod.GATEWAY.value,
                orders.c.status.in_([s.value for s in state.RESERVING]),
            )
        )
    ).one()
    return int(row[0]), int(row[1])
