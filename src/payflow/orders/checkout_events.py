"""What Stripe's checkout events do to gateway orders (docs/api.md, Orders): the webhook handler the app
registers with payments/webhooks.py, run inside the transaction that records the event.

Events may arrive in any order and more than once; the order state machine only moves forward, so a
late or repeated event changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.unit_of_work import UnitOfWork
from payflow.orders import repository
from payflow.orders.effects import Effects
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Order
from payflow.orders.settlement import fulfil, mark_processing, release
from payflow.payments.gateway import CheckoutSession, MalformedObject, WebhookEvent
from payflow.payments.webhooks import WebhookOutcome
from payflow.wiring import AppContext

log = structlog.get_logger("payflow.orders")

Step = Callable[[AsyncConnection, Order, CheckoutSession, Effects], Awaitable[WebhookOutcome]]


async def _completed(
    conn: AsyncConnection, order: Order, session: CheckoutSession, effects: Effects
) -> WebhookOutcome:
    if session.payment_status == "paid":
        return await fulfil(conn, order, session, effects)
    return await mark_processing(conn, order, effects)


async def _async_failed(
    conn: AsyncConnection, order: Order, _session: CheckoutSession, effects: Effects
) -> WebhookOutcome:
    moved = await release(
        conn, order, OrderStatus.FAILED, "PAYMENT_FAILED: the payment failed", effects
    )
    return "failed" if moved else "no_change"


async def _expired(
    conn: AsyncConnection, order: Order, _session: CheckoutSession, effects: Effects
) -> WebhookOutcome:
    if order.status is not OrderStatus.PENDING:
        return "no_change"
    # A cancellation under way expired the checkout itself: the order says it was cancelled.
    reason = (order.metadata or {}).get(repository.CANCEL_REQUESTED) or "EXPIRED: checkout expired"
    moved = await release(conn, order, OrderStatus.CANCELLED, str(reason), effects)
    return "cancelled" if moved else "no_change"


STEPS: dict[str, Step] = {
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


async def handle(ctx: AppContext, uow: UnitOfWork, event: WebhookEvent) -> WebhookOutcome:
    """Act on one newly recorded event; say what it did."""
    step = STEPS.get(event.type)
    if step is None:
        return "ignored"
    session = _session_of(event)
    if session is None:
        return "malformed"
    order_id = _order_id(session)
    order = await repository.lock(uow.conn, order_id) if order_id else None
    if order is None or order.payment_method is not PaymentMethod.GATEWAY:
        return "unknown_order"
    if order.stripe_session_id not in (None, session.id):
        return "session_mismatch"
    return await step(uow.conn, order, session, Effects.of(ctx, uow))
