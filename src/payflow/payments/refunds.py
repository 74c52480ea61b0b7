"""The refund outbox: refunds decided in a transaction, sent to the gateway after its commit.

Each due refund is claimed (its next attempt pushed past a lease, so two processes do not send it
at once) and sent with an idempotency key derived from its order, so however often it is attempted
the payment is refunded once. Then one of three outcomes is written:
- the gateway made the refund: SUCCEEDED;
- the gateway failed or could not be reached (network, 5xx, 429, 409, an authentication problem
  an operator can fix): still PENDING, the next attempt after an exponential backoff
  (REFUND_RETRY_BASE_SECONDS doubling up to REFUND_RETRY_MAX_SECONDS);
- the gateway refused for good (400, 402 or 404: the charge is already refunded or disputed, the
  payment does not exist): FAILED with Stripe's reason, on the refund row and in the order's
  failure reason, logged at error and counted. Nothing is retried after that.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.tables import utcnow
from payflow.core.unit_of_work import UnitOfWork
from payflow.payments import repository
from payflow.payments.errors import PaymentGatewayError
from payflow.wiring import AppContext

log = structlog.get_logger("payflow.payments")

BATCH = 50
# Longer than the gateway client's whole retry budget (3 tries of 10 s): a claimed refund is not
# due again while its sender may still be waiting for the answer.
LEASE = timedelta(minutes=2)
# Stripe's answers that no retry can change.
PERMANENT_STATUSES = frozenset({400, 402, 404})


def refund_key(order_id: uuid.UUID) -> str:
    return f"payflow-refund-{order_id}"


def is_permanent(error: PaymentGatewayError) -> bool:
    return error.http_status in PERMANENT_STATUSES


def retry_delay(attempts: int, base: float, cap: float) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base, 2·base, 4·base, … up to cap."""
    return timedelta(seconds=min(cap, base * 2 ** min(attempts - 1, 32)))


async def _done(uow: UnitOfWork, *, order_id: uuid.UUID, provider_id: str) -> None:
    await repository.refund_done(uow.conn, order_id, provider_id)


# Told, in the same transaction, that the refund of an order failed for good (and why).
GivenUp = Callable[[AsyncConnection, uuid.UUID, str], Awaitable[None]]


async def send_pending_refunds(
    ctx: AppContext, order_ids: list[uuid.UUID] | None = None, *, on_given_up: GivenUp
) -> int:
    """Send the refunds that are due (of these orders, or all); returns how many succeeded."""
    now = utcnow()
    due = await ctx.db.transaction(
        lambda uow: repository.claim_due_refunds(
            uow.conn, now=now, lease_until=now + LEASE, order_ids=order_ids, limit=BATCH
        )
    )
    sent = 0
    for item in due:
        try:
            refund = await ctx.gateway.refund(
                item.payment_intent_id, item.amount, idempotency_key=refund_key(item.order_id)
            )
        except PaymentGatewayError as exc:
            await _record_refusal(ctx, item.order_id, item.attempts + 1, exc, on_given_up)
            continue
        await ctx.db.transaction(partial(_done, order_id=item.order_id, provider_id=refund.id))
        ctx.metrics.gateway_refunds.labels("succeeded").inc()
        log.info("payments.refunded", order_id=str(item.order_id), amount=item.amount)
        sent += 1
    return sent


async def _record_refusal(
    ctx: AppContext,
    order_id: uuid.UUID,
    attempts: int,
    error: PaymentGatewayError,
    on_given_up: GivenUp,
) -> None:
    if is_permanent(error):

        async def give_up(uow: UnitOfWork) -> bool:
            if not await repository.refund_failed(uow.conn, order_id, error.detail):
                return False
            await on_given_up(uow.conn, order_id, error.detail)
            return True

        if await ctx.db.transaction(give_up):
            ctx.metrics.gateway_refunds.labels("failed").inc()
            log.error("payments.refund_failed", order_id=str(order_id), error=error.detail)
        return
    settings = ctx.settings
    delay = retry_delay(
        attempts, settings.refund_retry_base_seconds, settings.refund_retry_max_seconds
    )
    now = utcnow()
    await ctx.db.transaction(
        lambda uow: repository.refund_retry_later(
            uow.conn, order_id=order_id, error=error.detail, now=now, next_attempt_at=now + delay
        )
    )
    ctx.metrics.gateway_refunds.labels("retry").inc()
    log.warning(
        "payments.refund_retry",
        order_id=str(order_id),
        attempts=attempts,
        next_attempt_in=delay.total_seconds(),
        error=error.detail,
    )
