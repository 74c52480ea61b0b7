"""The refund outbox: refunds decided in a transaction, sent to the gateway after its commit.

A send that fails stays PENDING and is retried by the sweeper. Every attempt for an order uses the
same idempotency key, so however often it is retried the payment is refunded once.
"""

from __future__ import annotations

import uuid
from functools import partial

import structlog

from payflow.core.context import AppContext
from payflow.payments import repository
from payflow.payments.errors import PaymentGatewayError

log = structlog.get_logger("payflow.payments")


def refund_key(order_id: uuid.UUID) -> str:
    return f"payflow-refund-{order_id}"


async def send_pending_refunds(ctx: AppContext, order_ids: list[uuid.UUID] | None = None) -> int:
    """Send the pending refunds (of these orders, or all); returns how many succeeded."""
    pending = await ctx.db.read(lambda conn: repository.pending_refunds(conn, order_ids=order_ids))
    sent = 0
    for item in pending:
        try:
            refund = await ctx.gateway.refund(
                item.payment_intent_id, item.amount, idempotency_key=refund_key(item.order_id)
            )
        except PaymentGatewayError as exc:
            log.warning("payments.refund_failed", order_id=str(item.order_id), error=exc.detail)
            await ctx.db.transaction(
                partial(repository.refund_failed, order_id=item.order_id, error=exc.detail)
            )
            continue
        await ctx.db.transaction(
            partial(repository.refund_done, order_id=item.order_id, provider_refund_id=refund.id)
        )
        log.info("payments.refunded", order_id=str(item.order_id), amount=item.amount)
        sent += 1
    return sent
