"""Gateway purchases (SPEC §7): reserve, open a Stripe Checkout session, hand back its URL.

Three steps, because the gateway call must not happen inside a transaction:
1. one transaction claims the idempotency key (PROCESSING), checks the buyer's reservation caps
   (orders/reservation_cap.py), reserves the stock and writes the PENDING order;
2. the Checkout session is created (its Stripe idempotency key derives from the order id, so a
   retry can never open a second one);
3. one transaction stores the session id and the response under the key — or, if the gateway
   failed, releases the reservation, marks the order FAILED and stores the 502.
If the process dies between steps, the sweeper releases the reservation when it expires and frees
the key, from its idempotency record and from the order together (jobs/retention.py).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core import idempotency
from payflow.core.context import AppContext
from payflow.core.errors import DomainError, Forbidden, NotFound
from payflow.core.idempotency import IdempotencyScope, StoredResponse
from payflow.core.tables import utcnow
from payflow.orders import repository, reservation_cap
from payflow.orders.effects import Effects
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Order
from payflow.orders.service import record_failed_order, visible_order
from payflow.payments import service as payments_service
from payflow.payments.errors import PaymentGatewayError
from payflow.payments.settlement import release
from payflow.products import cache as product_cache
from payflow.products import stock
from payflow.users.records import User

log = structlog.get_logger("payflow.orders")

CLOCK_SLACK = 10  # seconds

RenderCheckout = Callable[[Order, str | None, str | None], StoredResponse]


def cancel_token(ctx: AppContext, order_id: uuid.UUID) -> str:
    """Authorises the browser's return to /payments/cancel for this order (Stripe substitutes the
    session id into success URLs only)."""
    key = ctx.settings.jwt_access_secret.encode()
    return hmac.new(key, f"cancel:{order_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _checkout_urls(ctx: AppContext, order_id: uuid.UUID) -> tuple[str, str]:
    base = ctx.settings.public_url.rstrip("/") + "/api/v1/payments"
    success = base + "/success?session_id={CHECKOUT_SESSION_ID}"
    cancel = f"{base}/cancel?order_id={order_id}&token={cancel_token(ctx, order_id)}"
    return success, cancel


async def buy_with_gateway(
    ctx: AppContext,
    buyer: User,
    product_id: uuid.UUID,
    quantity: int,
    scope: IdempotencyScope | None,
    render: RenderCheckout,
    *,
    instance: str,
    request_id: str | None,
) -> StoredResponse:
    order_id = uuid.uuid4()
    reserved: list[tuple[Order, str, int]] = []

    async def reserve(conn: AsyncConnection) -> StoredResponse | None:
        reserved.clear()
        if scope is not None and not await idempotency.claim(conn, scope, idempotency.PROCESSING):
            return await idempotency.existing(conn, scope)
        await reservation_cap.check(conn, ctx.settings, buyer.id, quantity)
        now = utcnow()
        product = await stock.take_for_buyer(
            conn, product_id, quantity, buyer.id, reserve=True, now=now
        )
        order = await repository.insert_order(
            conn,
            order_id=order_id,
            user_id=buyer.id,
            product_id=product_id,
            merchant_id=product.merchant_id,
            quantity=quantity,
            unit_price=product.price,
            currency=product.currency,
            payment_method=PaymentMethod.GATEWAY,
            status=OrderStatus.PENDING,
            idempotency_key=scope.key if scope else None,
            now=now,
            reservation_expires_at=now + timedelta(seconds=ctx.settings.checkout_ttl_seconds),
        )
        reserved.append((order, product.name, product.version))
        return None

    try:
        replay = await ctx.db.transaction(reserve)
    except idempotency.NOT_AN_OUTCOME:
        raise
    except DomainError as error:
        return await idempotency.settle_failure(
            ctx,
            scope,
            error,
            instance=instance,
            request_id=request_id,
            record_failure=lambda conn, err: record_failed_order(
                ctx,
                conn,
                err,
                order_id,
                buyer.id,
                product_id,
                quantity,
                PaymentMethod.GATEWAY,
                scope,
            ),
        )
    if replay is not None:
        return replay
    order, product_name, product_version = reserved[0]
    await product_cache.invalidate(ctx, [(product_id, product_version)])
    log.info("order.reserved", order_id=str(order.id), method="GATEWAY", quantity=quantity)

    success_url, cancel_url = _checkout_urls(ctx, order.id)
    # Counted from now, not from the reservation, plus slack for the request's travel time:
    # Stripe refuses an expiry less than 30 minutes ahead of when it receives the request.
    expires_at = utcnow() + timedelta(seconds=ctx.settings.checkout_ttl_seconds + CLOCK_SLACK)
    try:
        session = await ctx.gateway.create_checkout_session(
            order_id=str(order.id),
            product_name=product_name,
            unit_amount=order.unit_price,
            quantity=order.quantity,
            currency=order.currency,
            expires_at=expires_at,
            success_url=success_url,
            cancel_url=cancel_url,
            idempotency_key=f"payflow-checkout-{order.id}",
        )
    except PaymentGatewayError as error:
        return await _undo_reservation(ctx, order, error, scope, instance, request_id)

    async def attach(conn: AsyncConnection) -> StoredResponse:
        # The reservation lives exactly as long as the checkout that can pay for it.
        attached = await repository.attach_session(conn, order.id, session.id, expires_at)
        response = render(attached, session.url, session.id)
        if scope is not None:
            await idempotency.store(conn, scope, response)
        return response

    response = await ctx.db.transaction(attach)
    ctx.metrics.orders.labels(OrderStatus.PENDING.value, PaymentMethod.GATEWAY.value).inc()
    return response


async def _undo_reservation(
    ctx: AppContext,
    order: Order,
    error: PaymentGatewayError,
    scope: IdempotencyScope | None,
    instance: str,
    request_id: str | None,
) -> StoredResponse:
    """The gateway failed: nothing was charged; release the stock, end the order FAILED."""
    effects = Effects()
    reason = f"{error.code}: {error.detail}"

    async def undo(conn: AsyncConnection, _error: DomainError) -> None:
        effects.begin()
        current = await repository.lock(conn, order.id)
        if current is not None:
            await release(conn, current, OrderStatus.FAILED, reason, effects)
            if not idempotency.is_storable(error):
                # The key is released for a retry: the failed order must not hold it either.
                await repository.forget_idempotency_key(conn, order.id)
        effects.end()

    log.warning("order.gateway_failed", order_id=str(order.id), error=error.detail)
    try:
        return await idempotency.settle_failure(
            ctx,
            scope,
            error,
            instance=instance,
            request_id=request_id,
            record_failure=undo,
            claimed=True,
        )
    finally:
        await effects.apply(ctx)  # a no-op unless the undo committed


async def order_for_session(ctx: AppContext, session_id: str) -> Order:
    order = await ctx.db.read(lambda conn: repository.find_by_session(conn, session_id))
    if order is None:
        raise NotFound("No order for this checkout session")
    return order


async def cancel_by_buyer(
    ctx: AppContext,
    caller: User,
    order_id: uuid.UUID,
    scope: IdempotencyScope | None,
    render: Callable[[Order], StoredResponse],
    *,
    instance: str,
    request_id: str | None,
) -> StoredResponse:
    """POST /orders/{id}/cancel: the buyer cancels a PENDING gateway order."""
    if scope is not None:
        replay = await ctx.db.read(lambda conn: idempotency.existing_or_none(conn, scope))
        if replay is not None:
            return replay
    try:
        order = await ctx.db.read(lambda conn: visible_order(conn, caller, order_id))
        if order.user_id != caller.id:
            raise Forbidden("Only the order's buyer can cancel it")
        cancelled = await payments_service.cancel(ctx, order, "CANCELLED: by the buyer")
    except idempotency.NOT_AN_OUTCOME:
        raise
    except DomainError as error:
        if scope is None:
            raise
        return await idempotency.settle_failure(
            ctx, scope, error, instance=instance, request_id=request_id
        )
    response = render(cancelled)
    if scope is None:
        return response

    async def store(conn: AsyncConnection) -> StoredResponse:
        if not await idempotency.claim(conn, scope, idempotency.COMPLETED):
            return await idempotency.existing(conn, scope)
        await idempotency.store(conn, scope, response)
        return response

    return await ctx.db.transaction(store)
