"""What happens to a gateway order when its payment succeeds, fails or never comes.

These are steps of a unit of work: they take the transaction's connection, and they record what
the caches and the refund outbox must learn in `Effects`, applied after the commit (a hook of the
unit of work). Every status
change goes through the order state machine (orders.repository.transition), so a repeated or
late event can only move an order forward. Locks follow the global order: order row, product,
wallets.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.money import Money, format_minor
from payflow.core.tables import utcnow
from payflow.orders import repository as orders_repo
from payflow.orders.effects import Effects
from payflow.orders.models import OrderStatus
from payflow.orders.records import Order
from payflow.payments import repository as payments_repo
from payflow.payments.gateway import CheckoutSession
from payflow.payments.webhooks import WebhookOutcome
from payflow.products import stock
from payflow.wallets import repository as wallets_repo
from payflow.wallets.errors import BalanceLimitExceeded, WalletLocked
from payflow.wallets.models import ReferenceType, TransactionType

_HOLDING_RESERVATION = frozenset({OrderStatus.PENDING, OrderStatus.PAYMENT_PROCESSING})

log = structlog.get_logger("payflow.orders")


async def _move(
    conn: AsyncConnection,
    order: Order,
    target: OrderStatus,
    effects: Effects,
    **fields: Any,
) -> Order | None:
    moved = await orders_repo.transition(
        conn, order.id, target, only_from=frozenset({order.status}), **fields
    )
    if moved is not None:
        effects.transitions.append((order.id, target, order.payment_method))
    return moved


async def release(
    conn: AsyncConnection, order: Order, target: OrderStatus, reason: str, effects: Effects
) -> Order | None:
    """End an order that holds a reservation (CANCELLED or FAILED) and put its units back."""
    if order.status not in _HOLDING_RESERVATION:
        return None
    moved = await _move(conn, order, target, effects, failure_reason=reason)
    if moved is not None:
        product = await stock.release_reservation(conn, order.product_id, order.quantity)
        effects.products.append((product.id, product.version))
    return moved


async def mark_processing(conn: AsyncConnection, order: Order, effects: Effects) -> WebhookOutcome:
    """Checkout completed but the payment is still settling: keep the reservation, wait."""
    if order.status is not OrderStatus.PENDING:
        return "no_change"
    moved = await _move(conn, order, OrderStatus.PAYMENT_PROCESSING, effects)
    return "awaiting_payment" if moved else "no_change"


async def _refund_payment(
    conn: AsyncConnection,
    order: Order,
    session: CheckoutSession,
    amount: int,
    reason: str,
    effects: Effects,
) -> None:
    if not session.payment_intent:
        log.error("payments.refund_impossible", order_id=str(order.id), reason="no payment intent")
        return
    await payments_repo.add_refund(
        conn,
        order_id=order.id,
        payment_intent_id=session.payment_intent,
        amount=amount,
        currency=session.currency or order.currency,
        reason=reason,
    )
    effects.refunds.append(order.id)


async def fulfil(
    conn: AsyncConnection, order: Order, session: CheckoutSession, effects: Effects
) -> WebhookOutcome:
    """A payment for the order succeeded: complete it (reserved units sold, merchant credited),
    or, if it cannot be honoured, refund the payment and say why. It never raises for a payment
    payflow cannot take: a verified payment always ends the order in a defined state (a webhook
    that kept failing would leave a paid order PENDING)."""
    if order.status in (OrderStatus.COMPLETED, OrderStatus.REFUNDED):
        return "already_settled"
    paid, currency = session.amount_total, session.currency
    if paid != order.amount or currency != order.currency:
        reason = (
            f"AMOUNT_MISMATCH: paid {paid} {currency}, order is {order.amount} {order.currency}"
        )
        if order.status in _HOLDING_RESERVATION:
            await release(conn, order, OrderStatus.FAILED, reason, effects)
        else:
            await _move(conn, order, OrderStatus.FAILED, effects, failure_reason=reason)
        if paid:
            await _refund_payment(conn, order, session, paid, reason, effects)
        return "amount_mismatch"

    try:
        # A savepoint: if the merchant cannot be credited, the units taken here go back as well.
        async with conn.begin_nested():
            sold = await _sell_and_credit(conn, order, effects)
    except (BalanceLimitExceeded, WalletLocked) as refused:
        reason = f"MERCHANT_CANNOT_BE_CREDITED: {refused.detail}; the payment was refunded"
        await _end_refunded(conn, order, session, reason, effects)
        return "refunded_not_creditable"
    if not sold:
        reason = "OUT_OF_STOCK: paid after the reservation was released, and the stock is gone"
        await _end_refunded(conn, order, session, reason, effects)
        return "refunded_out_of_stock"
    await _move(
        conn,
        order,
        OrderStatus.COMPLETED,
        effects,
        stripe_payment_intent_id=session.payment_intent,
        completed_at=utcnow(),
    )
    return "fulfilled"


async def _sell_and_credit(conn: AsyncConnection, order: Order, effects: Effects) -> bool:
    """Sell the order's units (its reservation, or — released meanwhile — the stock again if it
    is there) and credit the merchant. False when the stock is gone."""
    if order.status in _HOLDING_RESERVATION:
        product = await stock.sell_reservation(conn, order.product_id, order.quantity)
    else:  # CANCELLED or FAILED: the reservation was released; take the units again if there
        taken = await stock.take_again(conn, order.product_id, order.quantity)
        if taken is None:
            return False
        product = taken
    movement = await wallets_repo.change_balance(
        conn,
        Money(order.amount, order.currency),
        user_id=order.merchant_id,
        credit=True,
        type=TransactionType.EARNING,
        description=f"Sale of order {order.id} ({format_minor(order.amount, order.currency)})",
        reference_type=ReferenceType.ORDER,
        reference_id=order.id,
    )
    # Recorded only once both steps stood: a rolled-back savepoint leaves nothing to apply.
    effects.products.append((product.id, product.version))
    effects.wallets.append(movement.wallet)
    return True


async def _end_refunded(
    conn: AsyncConnection, order: Order, session: CheckoutSession, reason: str, effects: Effects
) -> None:
    """A payment payflow cannot honour: the order ends REFUNDED (its reservation, if it still
    held one, released) and the payment is refunded through the gateway."""
    if order.status in _HOLDING_RESERVATION:
        await release(conn, order, OrderStatus.REFUNDED, reason, effects)
    else:
        await _move(conn, order, OrderStatus.REFUNDED, effects, failure_reason=reason)
    await _refund_payment(conn, order, session, order.amount, reason, effects)
