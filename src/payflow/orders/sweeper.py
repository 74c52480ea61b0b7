"""The sweeper: releases reservations whose checkout expired without any event, sends the gateway
refunds that are due, frees idempotency keys whose first request died between its transactions,
and deletes what is past its retention (jobs/retention.py).

It runs inside every `payflow serve` process (every SWEEPER_INTERVAL_SECONDS); all its steps are
conditional on the current state, so several processes sweeping at once are harmless.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from payflow.core.tables import utcnow
from payflow.core.unit_of_work import UnitOfWork
from payflow.jobs import retention
from payflow.orders import refund_outbox
from payflow.orders import repository as orders_repo
from payflow.orders.effects import Effects
from payflow.orders.models import OrderStatus
from payflow.orders.records import Order
from payflow.orders.settlement import fulfil, mark_processing, release
from payflow.payments.errors import PaymentGatewayError
from payflow.payments.gateway import CheckoutSession
from payflow.wiring import AppContext

BATCH = 100

log = structlog.get_logger("payflow.sweeper")


@dataclass(frozen=True, slots=True)
class SweepReport:
    released: int
    refunds_sent: int
    keys_freed: int
    pruned: int


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
    waits for the next round rather than risk cancelling a paid order. A session the gateway does
    not know (404) can never be paid: the reservation is released."""
    order = await ctx.db.read(lambda conn: orders_repo.get(conn, order_id))
    if order is None or not _is_expired(order):
        return None
    session: CheckoutSession | None = None
    reason = "EXPIRED: checkout expired without payment"
    if order.stripe_session_id:
        try:
            session = await ctx.gateway.expire_session(order.stripe_session_id)
        except PaymentGatewayError as exc:
            if exc.http_status != 404:
                log.info("sweeper.gateway_unavailable", order_id=str(order.id), error=exc.detail)
                return None
            reason = "EXPIRED: the gateway does not know the checkout session"

    async def work(uow: UnitOfWork) -> Order | None:
        conn, effects = uow.conn, Effects.of(ctx, uow)
        current = await orders_repo.lock(conn, order_id)
        released = None
        if current is not None and _is_expired(current):
            if session is not None and session.status == "complete":
                if session.payment_status == "paid":
                    await fulfil(conn, current, session, effects)
                else:
                    await mark_processing(conn, current, effects)
            else:
                released = await release(conn, current, OrderStatus.CANCELLED, reason, effects)
        return released

    return await ctx.db.transaction(work)


async def _expire_reservations(ctx: AppContext) -> int:
    """Each order in its own transaction: one that fails is logged and skipped, the rest go on."""
    expired = await ctx.db.read(
        lambda conn: orders_repo.expired_reservations(conn, utcnow(), BATCH)
    )
    released = 0
    for order_id in expired:
        try:
            if await _expire(ctx, order_id) is not None:
                released += 1
        except Exception as exc:  # one order must never stall the sweep of the others
            log.error(
                "sweeper.order_failed",
                order_id=str(order_id),
                error_type=type(exc).__name__,
                exc_info=exc,
            )
    return released


async def _duty(name: str, step: Callable[[], Awaitable[int]]) -> int:
    """Run one of the sweeper's duties; a failure is logged and the other duties still run."""
    try:
        return await step()
    except Exception as exc:
        log.error("sweeper.duty_failed", duty=name, error_type=type(exc).__name__, exc_info=exc)
        return 0


async def sweep_once(ctx: AppContext) -> SweepReport:
    released = await _duty("expire_reservations", lambda: _expire_reservations(ctx))
    refunds = await _duty("send_refunds", lambda: refund_outbox.send(ctx))
    freed = await _duty("release_stale_keys", lambda: retention.release_stale_keys(ctx.db))
    pruned = await _duty("prune_expired", lambda: _prune(ctx))
    if released or refunds or freed:
        log.info("sweeper.swept", released=released, refunds_sent=refunds, keys_freed=freed)
    return SweepReport(released=released, refunds_sent=refunds, keys_freed=freed, pruned=pruned)


async def _prune(ctx: AppContext) -> int:
    report = await retention.prune_expired(ctx.db)
    return report.idempotency_records + report.refresh_tokens + report.webhook_events


async def run_forever(ctx: AppContext, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_once(ctx)
        except Exception as exc:  # the sweeper must survive any one bad round
            log.error("sweeper.failed", error_type=type(exc).__name__, exc_info=exc)
