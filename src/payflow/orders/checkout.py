"""Gateway purchases (docs/api.md, Orders): reserve, open a Stripe Checkout session, hand back its URL.

Three steps, because the gateway call must not happen inside a transaction:
1. one transaction claims the idempotency key (PROCESSING), checks the buyer's reservation caps
   (orders/reservation_cap.py), reserves the stock and writes the PENDING order;
2. the Checkout session is created (its Stripe idempotency key derives from the order id, so a
   retry can never open a second one);
3. one transaction stores the session id and the response under the key — or, if the gateway
   failed, releases the reservation, marks the order FAILED and stores the 502.
If the process dies between steps, the sweeper releases the reservation when it expires and frees
the key, from its idempotency record and from the order together (jobs/retention.py).

Cancelling a PENDING gateway order — by the buyer, or by leaving the hosted checkout — expires its
session at the gateway first (so it can no longer be paid), then releases the stock.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta
from typing import NoReturn

import structlog

from payflow.core.errors import DomainError, Forbidden, NotFound
from payflow.core.idempotency import NOT_AN_OUTCOME, IdempotentRequest, runner
from payflow.core.tables import utcnow
from payflow.core.unit_of_work import UnitOfWork
from payflow.orders import repository, reservation_cap
from payflow.orders.effects import Effects
from payflow.orders.errors import OrderStateConflict
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Checkout, Order
from payflow.orders.service import record_failed_order, visible_order
from payflow.orders.settlement import release
from payflow.paths import API_PREFIX, PAYMENTS_PREFIX
from payflow.payments.errors import PaymentGatewayError
from payflow.products import cache as product_cache
from payflow.products import stock
from payflow.users.records import User
from payflow.wiring import AppContext

log = structlog.get_logger("payflow.orders")

CLOCK_SLACK = 10  # seconds


def cancel_token(ctx: AppContext, order_id: uuid.UUID) -> str:
    """Authorises the browser's return to /payments/cancel for this order (Stripe substitutes the
    session id into success URLs only)."""
    key = ctx.settings.jwt_access_secret.encode()
    return hmac.new(key, f"cancel:{order_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _checkout_urls(ctx: AppContext, order_id: uuid.UUID) -> tuple[str, str]:
    base = ctx.settings.public_url.rstrip("/") + API_PREFIX + PAYMENTS_PREFIX
    success = base + "/success?session_id={CHECKOUT_SESSION_ID}"
    cancel = f"{base}/cancel?order_id={order_id}&token={cancel_token(ctx, order_id)}"
    return success, cancel


async def buy_with_gateway(
    ctx: AppContext,
    buyer: User,
    product_id: uuid.UUID,
    quantity: int,
    request: IdempotentRequest[Checkout],
) -> Checkout:
    order_id = uuid.uuid4()
    key = request.scope.key if request.scope else None

    async def reserve(uow: UnitOfWork) -> tuple[Order, str]:
        conn = uow.conn
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
            idempotency_key=key,
            now=now,
            reservation_expires_at=now + timedelta(seconds=ctx.settings.checkout_ttl_seconds),
        )
        uow.after_commit(lambda: product_cache.invalidate(ctx, [(product.id, product.version)]))
        return order, product.name

    async def record_failure(uow: UnitOfWork, error: DomainError) -> None:
        await record_failed_order(
            ctx, uow, error, order_id, buyer.id, product_id, quantity, PaymentMethod.GATEWAY, key
        )

    try:
        order, product_name = await ctx.db.transaction(reserve, idempotency=request.begin())
    except NOT_AN_OUTCOME:
        raise
    except DomainError as error:
        await runner.settle_failure(ctx.db, request, error, record_failure=record_failure)
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
        await _undo_reservation(ctx, order, error, request)

    async def attach(uow: UnitOfWork) -> Checkout:
        # The reservation lives exactly as long as the checkout that can pay for it.
        attached = await repository.attach_session(uow.conn, order.id, session.id, expires_at)
        return Checkout(order=attached, url=session.url, session_id=session.id)

    checkout = await ctx.db.transaction(attach, idempotency=request.finish())
    ctx.metrics.orders.labels(OrderStatus.PENDING.value, PaymentMethod.GATEWAY.value).inc()
    return checkout


async def _undo_reservation(
    ctx: AppContext,
    order: Order,
    error: PaymentGatewayError,
    request: IdempotentRequest[Checkout],
) -> NoReturn:
    """The gateway failed: nothing was charged; release the stock, end the order FAILED."""
    reason = f"{error.code}: {error.detail}"

    async def undo(uow: UnitOfWork, _error: DomainError) -> None:
        current = await repository.lock(uow.conn, order.id)
        if current is not None:
            await release(uow.conn, current, OrderStatus.FAILED, reason, Effects.of(ctx, uow))
            if not runner.is_storable(error):
                # The key is released for a retry: the failed order must not hold it either.
                await repository.forget_idempotency_key(uow.conn, order.id)

    log.warning("order.gateway_failed", order_id=str(order.id), error=error.detail)
    await runner.settle_failure(ctx.db, request, error, record_failure=undo, claimed=True)


async def order_for_session(ctx: AppContext, session_id: str) -> Order:
    order = await ctx.db.read(lambda conn: repository.find_by_session(conn, session_id))
    if order is None:
        raise NotFound("No order for this checkout session")
    return order


async def product_name(ctx: AppContext, order: Order) -> str:
    name = await ctx.db.read(lambda conn: repository.product_name(conn, order.product_id))
    return name or "your product"


async def cancel(ctx: AppContext, order: Order, reason: str) -> Order:
    """Cancel a PENDING gateway order: expire its checkout first (so it can no longer be paid),
    then release the stock. An already completed checkout cannot be cancelled."""
    if order.payment_method is not PaymentMethod.GATEWAY or order.status is not OrderStatus.PENDING:
        raise OrderStateConflict(
            f"A {order.payment_method} order that is {order.status} cannot be cancelled"
        )
    if order.stripe_session_id:
        await _request_cancel(ctx, order.id, reason)
        try:
            session = await ctx.gateway.expire_session(order.stripe_session_id)
        except PaymentGatewayError:
            await _request_cancel(ctx, order.id, None)
            raise
        if session.status == "complete":
            await _request_cancel(ctx, order.id, None)
            raise OrderStateConflict("The checkout was already completed; its payment is settling")

    async def work(uow: UnitOfWork) -> Order:
        current = await repository.lock(uow.conn, order.id)
        assert current is not None  # noqa: S101 - orders are never deleted
        moved = await release(
            uow.conn, current, OrderStatus.CANCELLED, reason, Effects.of(ctx, uow)
        )
        return moved or current

    result = await ctx.db.transaction(work)
    if result.status is not OrderStatus.CANCELLED:
        raise OrderStateConflict(f"The order became {result.status} meanwhile")
    return result


async def _request_cancel(ctx: AppContext, order_id: uuid.UUID, reason: str | None) -> None:
    await ctx.db.transaction(lambda uow: repository.request_cancel(uow.conn, order_id, reason))


async def cancel_by_buyer(
    ctx: AppContext, caller: User, order_id: uuid.UUID, request: IdempotentRequest[Order]
) -> Order:
    """POST /orders/{id}/cancel: the buyer cancels a PENDING gateway order."""
    await runner.replay_if_answered(ctx.db, request)
    try:
        order = await ctx.db.read(lambda conn: visible_order(conn, caller, order_id))
        if order.user_id != caller.id:
            raise Forbidden("Only the order's buyer can cancel it")
        cancelled = await cancel(ctx, order, "CANCELLED: by the buyer")
    except NOT_AN_OUTCOME:
        raise
    except DomainError as error:
        await runner.settle_failure(ctx.db, request, error)

    if request.scope is None:
        return cancelled

    async def done(_uow: UnitOfWork) -> Order:
        return cancelled  # the cancellation committed above; this stores its response

    return await ctx.db.transaction(done, idempotency=request.once())


async def cancel_from_checkout(ctx: AppContext, order_id: uuid.UUID) -> Order:
    """The buyer left the hosted checkout (GET /payments/cancel, authorised by its token): a
    PENDING order is cancelled as POST /orders/{id}/cancel would; any other is shown as it is."""
    order = await ctx.db.read(lambda conn: repository.get(conn, order_id))
    if order is None:
        raise NotFound("Order not found")
    if order.status is not OrderStatus.PENDING:
        return order
    try:
        return await cancel(ctx, order, "CANCELLED: the buyer left the checkout")
    except OrderStateConflict:
        refreshed = await ctx.db.read(lambda conn: repository.get(conn, order_id))
        return refreshed or order
