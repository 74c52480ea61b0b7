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
from payflow.payments.refunds import send_pending_refunds
from payflow.payments.settlement import release

STALE_IDEMPOTENCY = timedelta(minutes=5)
BATCH = 100

log = structlog.get_logger("payflow.sweeper")


@dataclass(frozen=True, slots=True)
class SweepReport:
    released: int
    refunds_sent: int
    keys_freed: int


async def _expire(ctx: AppContext, order_id: uuid.UUID) -> Order | None:
    effects = Effects()

    async def work(conn: AsyncConnection) -> Order | None:
        effects.begin()
        order = await orders_repo.lock(conn, order_id)
        expired = (
            order is not None
            and order.status is OrderStatus.PENDING
            and order.reservation_expires_at is not None
            and order.reservation_expires_at <= utcnow()
        )
        released = None
        if order is not None and expired:
            reason = "EXPIRED: checkout expired without payment"
            released = await release(conn, order, OrderStatus.CANCELLED, reason, effects)
        effects.end()
        return released

    released = await ctx.db.transaction(work)
    await effects.apply(ctx)
    if released is not None and released.stripe_session_id:
        try:  # so the session can no longer be paid; a late payment would be handled anyway
            await ctx.gateway.expire_session(released.stripe_session_id)
        except DomainError as exc:
            log.info("sweeper.expire_session_failed", order_id=str(released.id), error=exc.detail)
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
