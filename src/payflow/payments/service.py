"""Stripe webhooks (SPEC §7), and cancelling a gateway order.

A webhook is verified over its raw bytes, recorded in the inbox (unique on the event id) and acted
on in the same transaction, so a duplicate — concurrent ones included — is acknowledged and does
nothing. Events may arrive in any order; the order state machine only moves forward.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.context import AppContext
from payflow.core.errors import DomainError, ServiceUnavailable
from payflow.orders import repository as orders_repo
from payflow.orders.effects import Effects
from payflow.orders.errors import OrderStateConflict
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Order
from payflow.payments import repository
from payflow.payments.errors import WebhookNotProcessed
from payflow.payments.gateway import CheckoutSession, MalformedObject, WebhookEvent
from payflow.payments.settlement import fulfil, mark_processing, release

log = structlog.get_logger("payflow.payments")

Handler = Callable[[AsyncConnection, Order, CheckoutSession, Effects], Awaitable[str]]


async def _completed(
    conn: AsyncConnection, order: Order, session: CheckoutSession, effects: Effects
) -> str:
    if session.payment_status == "paid":
        return await fulfil(conn, order, session, effects)
    return await mark_processing(conn, order, effects)


async def _async_failed(
    conn: AsyncConnection, order: Order, _session: CheckoutSession, effects: Effects
) -> str:
    moved = await release(
        conn, order, OrderStatus.FAILED, "PAYMENT_FAILED: the payment failed", effects
    )
    return "failed" if moved else "no_change"


async def _expired(
    conn: AsyncConnection, order: Order, _session: CheckoutSession, effects: Effects
) -> str:
    if order.status is not OrderStatus.PENDING:
        return "no_change"
    moved = await release(conn, order, OrderStatus.CANCELLED, "EXPIRED: checkout expired", effects)
    return "cancelled" if moved else "no_change"


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _completed,
    "checkout.session.async_payment_succeeded": fulfil,
    "checkout.session.async_payment_failed": _async_failed,
    "checkout.session.expired": _expired,
}


def _order_id(session: CheckoutSession) -> uuid.UUID | None:
    for candidate in (session.metadata.get("order_id"), session.client_reference_id):
        if candidate:
            try:
                return uuid.UUID(candidate)
            except ValueError:
                continue
    return None


def _session_of(event: WebhookEvent) -> CheckoutSession | None:
    try:
        return event.checkout_session
    except MalformedObject as exc:
        log.warning(
            "webhook.malformed_session", event_id=event.id, type=event.type, reason=str(exc)
        )
        return None


async def _apply(conn: AsyncConnection, event: WebhookEvent, effects: Effects) -> str:
    if not await repository.record_event(conn, event.id, event.type, event.data_object):
        return "duplicate"
    handler = HANDLERS.get(event.type)
    session = _session_of(event) if handler is not None else None
    outcome = "ignored"
    if handler is not None and session is None:
        outcome = "malformed"
    elif handler is not None and session is not None:
        order_id = _order_id(session)
        order = await orders_repo.lock(conn, order_id) if order_id else None
        if order is None or order.payment_method is not PaymentMethod.GATEWAY:
            outcome = "unknown_order"
        elif order.stripe_session_id not in (None, session.id):
            outcome = "session_mismatch"
        else:
            outcome = await handler(conn, order, session, effects)
    await repository.finish_event(conn, event.id, outcome)
    return outcome


async def handle_webhook(ctx: AppContext, payload: bytes, signature: str | None) -> str:
    """Verify, record and act on one delivery; returns what it did."""
    event = ctx.gateway.construct_event(payload, signature)
    effects = Effects()

    async def work(conn: AsyncConnection) -> str:
        effects.begin()
        outcome = await _apply(conn, event, effects)
        effects.end()
        return outcome

    try:
        outcome = await ctx.db.transaction(work)
    except ServiceUnavailable:
        raise
    except Exception as error:  # whatever it is, Stripe must deliver the event again
        await _keep_unprocessed(ctx, event, error)
        raise WebhookNotProcessed(
            "The event could not be processed now; deliver it again later"
        ) from error
    await effects.apply(ctx)
    ctx.metrics.webhooks.labels(event.type, outcome).inc()
    log.info("webhook.processed", event_id=event.id, type=event.type, outcome=outcome)
    return outcome


async def _keep_unprocessed(ctx: AppContext, event: WebhookEvent, error: Exception) -> None:
    """Processing a verified event failed and was rolled back. It is answered 503, so Stripe
    delivers it again (a 4xx would end in Stripe giving up on a paid order), and kept in the inbox
    as unprocessed, so `payflow audit` sees what it announced and a redelivery takes it up."""
    cause = error.code if isinstance(error, DomainError) else type(error).__name__
    outcome = f"error:{cause}"
    await ctx.db.transaction(
        lambda conn: repository.record_failure(
            conn, event.id, event.type, event.data_object, outcome
        )
    )
    ctx.metrics.webhooks.labels(event.type, outcome).inc()
    log.error(
        "webhook.not_processed",
        event_id=event.id,
        type=event.type,
        cause=cause,
        exc_info=error,
    )


async def cancel(ctx: AppContext, order: Order, reason: str) -> Order:
    """Cancel a PENDING gateway order: expire its checkout first (so it can no longer be paid),
    then release the stock. An already completed checkout cannot be cancelled."""
    if order.payment_method is not PaymentMethod.GATEWAY or order.status is not OrderStatus.PENDING:
        raise OrderStateConflict(
            f"A {order.payment_method} order that is {order.status} cannot be cancelled"
        )
    if order.stripe_session_id:
        session = await ctx.gateway.expire_session(order.stripe_session_id)
        if session.status == "complete":
            raise OrderStateConflict("The checkout was already completed; its payment is settling")
    effects = Effects()

    async def work(conn: AsyncConnection) -> Order:
        effects.begin()
        current = await orders_repo.lock(conn, order.id)
        assert current is not None  # noqa: S101 - orders are never deleted
        moved = await release(conn, current, OrderStatus.CANCELLED, reason, effects)
        effects.end()
        return moved or current

    result = await ctx.db.transaction(work)
    await effects.apply(ctx)
    if result.status is not OrderStatus.CANCELLED:
        raise OrderStateConflict(f"The order became {result.status} meanwhile")
    return result
