"""The sweeper: releases reservations whose checkout expired without any event, retries pending
refunds, and frees idempotency keys whose first request died between its transactions.

It runs inside every `payflow serve` process (every SWEEPER_INTERVAL_SECONDS); all its steps are
conditional on the current state, so several processes sweeping at once are harmless.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core import idempotency
from payflow.core.context import AppContext
from payflow.core.errors import DomainError
from payflow.core.tables import utcnow
from payflow.orders import repository as orders_repo
from payflow.orders.effects import Effects
from payflow.orders.models import OrderStatus
from payflow.orders.records import Order
from payflow.payments.gateway import CheckoutSession
from payflow.payments.refunds import send_pending_refunds
from payflow.payments.settlement import fulfil, mark_processing, release

STALE_IDEMPOTENCY = timedelta(minutes=5)
BATCH = 100

log = structlog.get_logger("payflow.sweeper")


@dataclass(frozen=True, slots=True)
class SweepReport:
    released: int
    refunds_sent: int
    keys_freed: int


def _is_expired(order: Order | None) -> bool:
    return (
        order is not None
        and order.status is OrderStatus.PENDING
        and order.reservation_expires_at is not None
        and order.reservation_expires_at <= utcnow()
    )


async def _expire(ctx: AppContext, order_id: uuid.UUID) -> Order | None:
    """End one reservation whose checkout should have expired. The session is expired at the
    gateway first: if it was in fact completed (paid in time, its event late), the order is
    settled from the session instead, as the event would; if the gateway cannot say, the order
    waits for the next round rather than risk cancelling a paid order."""
    order = await ctx.db.read(lambda conn: orders_repo.get(conn, order_id))
    if order is None or not _is_expired(order):
        return None
    session: CheckoutSession | None = None
    if order.stripe_session_id:
        try:
            session = await ctx.gateway.expire_session(order.stripe_session_id)
        except DomainError as exc:
            log.info("sweeper.gateway_unavailable", order_id=str(order.id), error=exc.detail)
            return None
    effects = Effects()

    async def work(conn: AsyncConnection) -> Order | None:
        effects.begin()
        current = await orders_repo.lock(conn, order_id)
        released = None
        if current is not None and _is_expired(current):
            if session is not None and session.status == "complete":
                if session.payment_status == "paid":
                    await fulfil(conn, current, session, effects)
                else:
                    await mark_processing(conn, current, effects)
            else:
                reason = "EXPIRED: checkout expired without payment"
                released = await release(conn, current, OrderStatus.CANCELLED, reason, effects)
        effects.end()
        return released

    released = await ctx.db.transaction(work)
    await effects.apply(ctx)
    return released


async def sweep_once(ctx: AppContext) -> SweepReport:
    expired = await ctx.db.read(
        lambda conn: orders_repo.expired_reservations(conn, utcnow(), BATCH)
    )
    released = [order for order in [await _expire(ctx, order_id) for order_id in expired] if order]
    refunds = await send_pending_refunds(ctx)
    freed = await ctx.db.transaction(
        lambda conn: idempotency.release_stale(conn, STALE_IDEMPOTENCY)
    )
    if released or refunds or freed:
        log.info("sweeper.swept", released=len(released), refunds_sent=refunds, keys_freed=freed)
    return SweepReport(released=len(released), refunds_sent=refunds, keys_freed=freed)


async def run_forever(ctx: AppContext, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_once(ctx)
        except Exception as exc:  # the sweeper must survive any one bad round
            log.error("sweeper.failed", error_type=type(exc).__name__, exc_info=exc)
