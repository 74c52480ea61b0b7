"""Wallet purchases and refunds (SPEC §6, §8), and reading orders.

A wallet purchase is one transaction: take the stock, debit the buyer, credit the merchant, write
the COMPLETED order and both ledger rows, store the idempotency record, commit; then refresh the
caches. Rows are locked in one global order — the order row (refunds only), then the product, then
wallets by ascending wallet id — so purchases, refunds, deposits and withdrawals cannot deadlock.
A business failure rolls all of that back and leaves only a FAILED order recording why.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core import idempotency
from payflow.core.context import AppContext
from payflow.core.errors import DomainError, Forbidden, NotFound
from payflow.core.idempotency import IdempotencyScope, StoredResponse
from payflow.core.money import Money
from payflow.core.tables import utcnow
from payflow.orders import repository
from payflow.orders.errors import OrderStateConflict
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Order
from payflow.products import cache as product_cache
from payflow.products import stock
from payflow.products.errors import OutOfStock, ProductUnavailable
from payflow.users.records import User
from payflow.wallets import repository as wallets_repo
from payflow.wallets import service as wallets_service
from payflow.wallets.errors import InsufficientFunds, WalletLocked
from payflow.wallets.models import TransactionType
from payflow.wallets.records import Wallet

ORDER_REFERENCE = "ORDER"
# Failures that leave a FAILED order behind (the product exists; the purchase could not be made).
_RECORDED_FAILURES = (OutOfStock, InsufficientFunds, ProductUnavailable, WalletLocked)

log = structlog.get_logger("payflow.orders")

Render = Callable[[Order], StoredResponse]


@dataclass(slots=True)
class _Committed:
    """What a unit of work changed, for the caches to learn after the commit."""

    wallets: list[Wallet]
    products: list[tuple[uuid.UUID, int]]

    def reset(self) -> None:
        self.wallets.clear()
        self.products.clear()


async def _after_commit(ctx: AppContext, committed: _Committed) -> None:
    await wallets_service.remember(ctx, committed.wallets)
    await product_cache.invalidate(ctx, committed.products)


async def buy_with_wallet(
    ctx: AppContext,
    buyer: User,
    product_id: uuid.UUID,
    quantity: int,
    scope: IdempotencyScope | None,
    render: Render,
    *,
    instance: str,
    request_id: str | None,
) -> StoredResponse:
    order_id = uuid.uuid4()
    key = scope.key if scope else None
    committed = _Committed([], [])

    async def purchase(conn: AsyncConnection) -> StoredResponse:
        committed.reset()
        now = utcnow()
        parties = await repository.purchase_parties(conn, product_id, buyer.id)
        if parties is None:
            raise NotFound("Product not found")
        merchant_id, buyer_wallet, merchant_wallet = parties
        product = await stock.take_for_buyer(
            conn, product_id, quantity, buyer.id, reserve=False, now=now
        )
        committed.products.append((product.id, product.version))
        amount = Money(product.price * quantity, product.currency)
        legs = sorted(
            [
                (buyer_wallet, False, TransactionType.PAYMENT),
                (merchant_wallet, True, TransactionType.EARNING),
            ]
        )
        for wallet_id, credit, kind in legs:
            try:
                movement = await wallets_repo.change_balance(
                    conn,
                    amount,
                    wallet_id=wallet_id,
                    credit=credit,
                    type=kind,
                    reference_type=ORDER_REFERENCE,
                    reference_id=order_id,
                    now=now,
                )
            except WalletLocked as locked:
                if credit:  # the merchant's wallet, not the buyer's
                    raise ProductUnavailable("The merchant cannot accept payments now") from locked
                raise
            committed.wallets.append(movement.wallet)
        order = await repository.insert_order(
            conn,
            order_id=order_id,
            user_id=buyer.id,
            product_id=product_id,
            merchant_id=merchant_id,
            quantity=quantity,
            unit_price=product.price,
            currency=product.currency,
            payment_method=PaymentMethod.WALLET,
            status=OrderStatus.COMPLETED,
            idempotency_key=key,
            now=now,
        )
        return render(order)

    async def record_failure(conn: AsyncConnection, error: DomainError) -> None:
        if not isinstance(error, _RECORDED_FAILURES):
            return
        terms = await repository.product_terms(conn, product_id)
        if terms is None:
            return
        merchant_id, price, currency = terms
        await repository.insert_order(
            conn,
            order_id=order_id,
            user_id=buyer.id,
            product_id=product_id,
            merchant_id=merchant_id,
            quantity=quantity,
            unit_price=price,
            currency=currency,
            payment_method=PaymentMethod.WALLET,
            status=OrderStatus.FAILED,
            idempotency_key=key,
            now=utcnow(),
            failure_reason=f"{error.code}: {error.detail}",
        )
        log.info("order.failed", order_id=str(order_id), reason=error.code)
        ctx.metrics.orders.labels(OrderStatus.FAILED.value, PaymentMethod.WALLET.value).inc()

    response = await idempotency.run(
        ctx,
        scope,
        purchase,
        instance=instance,
        request_id=request_id,
        record_failure=record_failure,
    )
    if committed.wallets:
        await _after_commit(ctx, committed)
        log.info("order.completed", order_id=str(order_id), method="WALLET", quantity=quantity)
        ctx.metrics.orders.labels(OrderStatus.COMPLETED.value, PaymentMethod.WALLET.value).inc()
    return response


async def refund(
    ctx: AppContext,
    caller: User,
    order_id: uuid.UUID,
    reason: str | None,
    scope: IdempotencyScope | None,
    render: Render,
    *,
    instance: str,
    request_id: str | None,
) -> StoredResponse:
    """Refund a COMPLETED wallet order, by the order's merchant (SPEC §8)."""
    committed = _Committed([], [])

    async def refund_steps(conn: AsyncConnection) -> StoredResponse:
        committed.reset()
        now = utcnow()
        order = await visible_order(conn, caller, order_id)
        if order.merchant_id != caller.id:
            raise Forbidden("Only the order's merchant can refund it")
        if order.payment_method is not PaymentMethod.WALLET:
            raise OrderStateConflict("Gateway orders are refunded through the payment gateway")
        refunded = await repository.transition(
            conn,
            order.id,
            OrderStatus.REFUNDED,
            now=now,
            only_from=frozenset({OrderStatus.COMPLETED}),
            metadata={**(order.metadata or {}), "refundReason": reason},
        )
        if refunded is None:
            raise OrderStateConflict(f"An order that is {order.status} cannot be refunded")
        product = await stock.return_units(conn, order.product_id, order.quantity, now=now)
        committed.products.append((product.id, product.version))
        ids = await wallets_repo.wallet_ids(conn, [order.user_id, order.merchant_id])
        amount = Money(order.amount, order.currency)
        legs = sorted([(ids[order.merchant_id], False), (ids[order.user_id], True)])
        description = f"Refund of order {order.id}" + (f": {reason}" if reason else "")
        for wallet_id, credit in legs:
            movement = await wallets_repo.change_balance(
                conn,
                amount,
                wallet_id=wallet_id,
                credit=credit,
                type=TransactionType.REFUND,
                description=description,
                reference_type=ORDER_REFERENCE,
                reference_id=order.id,
                now=now,
            )
            committed.wallets.append(movement.wallet)
        return render(refunded)

    response = await idempotency.run(
        ctx, scope, refund_steps, instance=instance, request_id=request_id
    )
    if committed.wallets:
        await _after_commit(ctx, committed)
        log.info("order.refunded", order_id=str(order_id), method="WALLET")
        ctx.metrics.orders.labels(OrderStatus.REFUNDED.value, PaymentMethod.WALLET.value).inc()
    return response


async def visible_order(conn: AsyncConnection, caller: User, order_id: uuid.UUID) -> Order:
    """The order if the caller is its buyer or its merchant; NOT_FOUND for anyone else, exactly
    as for an order that does not exist."""
    order = await repository.get(conn, order_id)
    if order is None or caller.id not in (order.user_id, order.merchant_id):
        raise NotFound("Order not found")
    return order


async def get_order(ctx: AppContext, caller: User, order_id: uuid.UUID) -> Order:
    return await ctx.db.read(lambda conn: visible_order(conn, caller, order_id))
