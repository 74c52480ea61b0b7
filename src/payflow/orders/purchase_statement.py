"""The wallet purchase as one PostgreSQL statement: the fast path of `service.buy_with_wallet`.

One round trip does what the step-by-step purchase does in nine (BEGIN and COMMIT included): take
the stock, lock both wallets, debit the buyer, credit the merchant, write both ledger rows and the
COMPLETED order. It keeps every rule of the step-by-step path, in the same statement:

- **Conditions.** The stock UPDATE only matches a live product of another merchant with enough
  units; the wallet UPDATE only matches unlocked wallets in the product's currency whose new
  balance stays within 0 … MAX_MINOR_UNITS. The final SELECT checks that the order and both ledger
  rows were written; if anything was refused it raises (a text→int cast of a marker; it names a
  column so that the planner cannot evaluate it in advance), so the statement writes nothing.
  The caller then runs the step-by-step path, which finds out *why* (OUT_OF_STOCK,
  INSUFFICIENT_FUNDS, …) and records the FAILED order exactly as it always has.
- **Lock order.** The product row is locked first (the stock UPDATE; every later part reads its
  result), then both wallets in ascending id order (`SELECT … ORDER BY id FOR UPDATE`: rows are
  locked as the sorted rows come out), and only then are they updated (the UPDATE joins the locked
  rows, so it can only touch a row already locked). That is the global lock order of
  `service.py`, so this path cannot deadlock with refunds, deposits or the step-by-step path.
- **Isolation.** READ COMMITTED: each UPDATE and the locking SELECT re-check their conditions on the
  newest committed row version after taking the lock, so a balance or a stock level is never
  decided on a stale read.

The statement text is fixed, so asyncpg prepares it once per connection. An unkeyed purchase runs
it on its own (`purchase_alone`, straight on asyncpg: core/driver.py); a keyed one inside the
transaction that also claims and stores its idempotency record (`purchase`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.driver import DriverPool
from payflow.core.money import MAX_MINOR_UNITS
from payflow.orders import repository
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Order
from payflow.wallets.models import ReferenceType, TransactionType
from payflow.wallets.records import Wallet

REFUSED_MARKER = "payflow: purchase refused"
_INVALID_TEXT_REPRESENTATION = "22P02"

# $1 product id, $2 buyer (user) id, $3 quantity, $4 now, $5 order id, $6 buyer's ledger row id,
# $7 merchant's ledger row id, $8 idempotency key (or NULL).
# Only module constants are interpolated (S608 is about request data).
PURCHASE_SQL = f"""
WITH product AS (
  UPDATE products
     SET available_units = available_units - $3::int, version = version + 1,
         updated_at = $4::timestamptz
   WHERE id = $1::uuid AND deleted_at IS NULL AND is_active IS TRUE
     AND merchant_id <> $2::uuid AND available_units >= $3::int
  RETURNING id, merchant_id, price, currency, version, price * $3::int AS amount
), locked AS MATERIALIZED (
  SELECT w.id
    FROM wallets w, product p
   WHERE w.user_id = ANY (ARRAY[$2::uuid, p.merchant_id])
   ORDER BY w.id
     FOR UPDATE OF w
), moved AS (
  UPDATE wallets w
     SET balance = w.balance + CASE WHEN w.user_id = $2::uuid THEN -p.amount ELSE p.amount END,
         version = w.version + 1, updated_at = $4::timestamptz
    FROM locked l, product p
   WHERE w.id = l.id AND w.currency = p.currency AND w.is_locked IS FALSE
     AND w.balance + CASE WHEN w.user_id = $2::uuid THEN -p.amount ELSE p.amount END
         BETWEEN 0 AND {MAX_MINOR_UNITS}
  RETURNING w.id, w.user_id, w.balance, w.currency, w.is_locked, w.version, w.updated_at,
            w.user_id = $2::uuid AS is_buyer, p.amount
), ledger AS (
  INSERT INTO wallet_transactions
         (id, wallet_id, seq, type, status, amount, balance_before, balance_after, currency,
          reference_type, reference_id, created_at, updated_at)
  SELECT CASE WHEN m.is_buyer THEN $6::uuid ELSE $7::uuid END, m.id, m.version,
         CASE WHEN m.is_buyer THEN '{TransactionType.PAYMENT.value}'
              ELSE '{TransactionType.EARNING.value}' END,
         'COMPLETED', m.amount,
         CASE WHEN m.is_buyer THEN m.balance + m.amount ELSE m.balance - m.amount END,
         m.balance, m.currency, '{ReferenceType.ORDER.value}', $5::uuid, $4::timestamptz, $4::timestamptz
    FROM moved m
   WHERE (SELECT count(*) FROM moved) = 2
  RETURNING id
), placed AS (
  INSERT INTO orders
         (id, user_id, product_id, merchant_id, quantity, unit_price, amount, currency,
          payment_method, status, idempotency_key, completed_at, created_at, updated_at)
  SELECT $5::uuid, $2::uuid, p.id, p.merchant_id, $3::int, p.price, p.amount, p.currency,
         '{PaymentMethod.WALLET.value}', '{OrderStatus.COMPLETED.value}', $8::text,
         $4::timestamptz, $4::timestamptz, $4::timestamptz
    FROM product p
   WHERE (SELECT count(*) FROM moved) = 2
  RETURNING id
)
SELECT CASE WHEN (SELECT count(*) FROM ledger) = 2 AND (SELECT count(*) FROM placed) = 1
            THEN 0 ELSE ('{REFUSED_MARKER} ' || p.id)::int END AS refused,
       p.merchant_id, p.price, p.currency, p.version AS product_version,
       m.id, m.user_id, m.balance, m.is_locked, m.version, m.updated_at
  FROM product p LEFT JOIN moved m ON TRUE
"""  # noqa: S608


class PurchaseRefused(Exception):
    """The statement wrote nothing: some condition did not hold (which one is not known here)."""


@dataclass(frozen=True, slots=True)
class Purchase:
    order: Order
    product_version: int
    wallets: list[Wallet]


def is_refusal(exc: BaseException) -> bool:
    """Whether `exc` (from asyncpg, or from SQLAlchemy wrapping it) is the statement's refusal."""
    for candidate in (exc, getattr(exc, "orig", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code == _INVALID_TEXT_REPRESENTATION and REFUSED_MARKER in str(candidate):
            return True
    return False


@dataclass(frozen=True, slots=True)
class PurchaseRequest:
    order_id: uuid.UUID
    buyer_id: uuid.UUID
    product_id: uuid.UUID
    quantity: int
    idempotency_key: str | None
    now: datetime

    def parameters(self) -> tuple[Any, ...]:
        return (
            self.product_id,
            self.buyer_id,
            self.quantity,
            self.now,
            self.order_id,
            uuid.uuid4(),
            uuid.uuid4(),
            self.idempotency_key,
        )


async def purchase_alone(driver: DriverPool, request: PurchaseRequest) -> Purchase:
    """The purchase as a unit of work of its own (autocommit: one round trip in all), or
    `PurchaseRefused` having written nothing."""
    try:
        rows = await driver.fetch(PURCHASE_SQL, *request.parameters(), write=True)
    except Exception as exc:
        if is_refusal(exc):
            raise PurchaseRefused from None
        raise
    return _purchase(request, rows)


async def purchase(conn: AsyncConnection, request: PurchaseRequest) -> Purchase:
    """The purchase inside the caller's transaction (beside an idempotency record). A refusal
    aborts that transaction: the caller must roll it back."""
    try:
        result = await conn.exec_driver_sql(PURCHASE_SQL, request.parameters())
        rows = result.mappings().all()
    except DBAPIError as exc:
        if is_refusal(exc):
            raise PurchaseRefused from None
        if repository.is_key_held(exc):  # as in repository.insert_order
            raise repository.key_held_error() from exc
        raise
    return _purchase(request, rows)


def _purchase(request: PurchaseRequest, rows: Sequence[Mapping[Any, Any]]) -> Purchase:
    if not rows:  # the stock UPDATE matched nothing, so nothing else was written either
        raise PurchaseRefused
    first, now = rows[0], request.now
    order = Order(
        id=request.order_id,
        user_id=request.buyer_id,
        product_id=request.product_id,
        merchant_id=first["merchant_id"],
        quantity=request.quantity,
        unit_price=first["price"],
        amount=first["price"] * request.quantity,
        currency=first["currency"],
        payment_method=PaymentMethod.WALLET,
        status=OrderStatus.COMPLETED,
        stripe_session_id=None,
        stripe_payment_intent_id=None,
        reservation_expires_at=None,
        completed_at=now,
        failed_at=None,
        failure_reason=None,
        metadata=None,
        created_at=now,
        updated_at=now,
    )
    wallets = [
        Wallet(
            id=row["id"],
            user_id=row["user_id"],
            balance=row["balance"],
            currency=first["currency"],
            is_locked=row["is_locked"],
            version=row["version"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]
    return Purchase(order=order, product_version=first["product_version"], wallets=wallets)
