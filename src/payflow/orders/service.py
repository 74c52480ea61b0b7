"""Wallet purchases and refunds (SPEC §6, §8), and reading orders.

A wallet purchase is one transaction: take the stock, debit the buyer, credit the merchant, write
the COMPLETED order and both ledger rows, store the idempotency record, commit; then refresh the
caches. Rows are locked in one global order — the order row (refunds only), then the product, then
wallets by ascending wallet id — so purchases, refunds, deposits and withdrawals cannot deadlock.
A business failure rolls all of that back and leaves only a FAILED order recording why.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core import idempotency
from payflow.core.context import AppContext
from payflow.core.errors import DomainError, Forbidden, NotFound
from payflow.core.idempotency import IdempotencyScope, StoredResponse
from payflow.core.money import Money
from payflow.core.tables import utcnow
from payflow.orders import purchase_statement, repository
from payflow.orders.effects import Effects
from payflow.orders.errors import OrderStateConflict, ReservationLimitExceeded
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Order
from payflow.payments import repository as payments_repo
from payflow.products import stock
from payflow.products.errors import OutOfStock, ProductUnavailable
from payflow.users.records import User
from payflow.wallets import repository as wallets_repo
from payflow.wallets.errors import InsufficientFunds, WalletLocked
from payflow.wallets.models import TransactionType

ORDER_REFERENCE = "ORDER"
# Failures that leave a FAILED order behind (the product exists; the purchase could not be made).
_RECORDED_FAILURES = (
    OutOfStock,
    InsufficientFunds,
    ProductUnavailable,
    WalletLocked,
    ReservationLimitExceeded,
)

log = structlog.get_logger("payflow.orders")

Render = Callable[[Order], StoredResponse]


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
    committed = Effects()

    def completed(made: purchase_statement.Purchase) -> StoredResponse:
        committed.products.append((product_id, made.product_version))
        committed.wallets.extend(made.wallets)
        committed.transitions.append((order_id, OrderStatus.COMPLETED, PaymentMethod.WALLET))
        committed.end()
        return render(made.order)

    def one_statement() -> purchase_statement.PurchaseRequest:
        committed.begin()
        return purchase_statement.PurchaseRequest(
            order_id=order_id,
            buyer_id=buyer.id,
            product_id=product_id,
            quantity=quantity,
            idempotency_key=key,
            now=utcnow(),
        )

    async def one_statement_keyed(conn: AsyncConnection) -> StoredResponse:
        return completed(await purchase_statement.purchase(conn, one_statement()))

    async def stepwise(conn: AsyncConnection) -> StoredResponse:
        committed.begin()
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
        committed.transitions.append((order_id, OrderStatus.COMPLETED, PaymentMethod.WALLET))
        committed.end()
        return render(order)

    async def record_failure(conn: AsyncConnection, error: DomainError) -> None:
        await record_failed_order(
            ctx, conn, error, order_id, buyer.id, product_id, quantity, PaymentMethod.WALLET, scope
        )

    async def run(effect: idempotency.Effect) -> StoredResponse:
        return await idempotency.run(
            ctx,
            scope,
            effect,
            instance=instance,
            request_id=request_id,
            record_failure=record_failure,
        )

    response: StoredResponse | None = None
    async with ctx.purchase_gate.admit(product_id):
        if ctx.db.driver is not None:
            # PostgreSQL: the common case in one statement. A refusal wrote nothing (and released
            # the key it claimed): the step-by-step purchase then finds out why and records it.
            with contextlib.suppress(purchase_statement.PurchaseRefused):
                if scope is None:
                    made = await purchase_statement.purchase_alone(ctx.db.driver, one_statement())
                    response = completed(made)
                else:
                    response = await run(one_statement_keyed)
        if response is None:
            response = await run(stepwise)
    if not response.replayed:  # a replay changed nothing; an earlier attempt's record is void
        await committed.apply(ctx)
    return response


async def record_failed_order(
    ctx: AppContext,
    conn: AsyncConnection,
    error: DomainError,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    product_id: uuid.UUID,
    quantity: int,
    method: PaymentMethod,
    scope: IdempotencyScope | None,
) -> None:
    """Leave a FAILED order saying why a purchase of an existing product could not be made."""
    if not isinstance(error, _RECORDED_FAILURES):
        return
    terms = await repository.product_terms(conn, product_id)
    if terms is None:
        return
    merchant_id, price, currency = terms
    await repository.insert_order(
        conn,
        order_id=order_id,
        user_id=buyer_id,
        product_id=product_id,
        merchant_id=merchant_id,
        quantity=quantity,
        unit_price=price,
        currency=currency,
        payment_method=method,
        status=OrderStatus.FAILED,
        idempotency_key=scope.key if scope else None,
        now=utcnow(),
        failure_reason=f"{error.code}: {error.detail}",
    )
    log.info("order.failed", order_id=str(order_id), reason=error.code)
    ctx.metrics.orders.labels(OrderStatus.FAILED.value, method.value).inc()


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
    """Refund a COMPLETED order, by its merchant (SPEC §8): in one transaction the order becomes
    REFUNDED, its units return to stock and the merchant is debited; the buyer is credited (wallet
    orders) or the payment is refunded through the gateway after the commit (gateway orders)."""
    effects = Effects()
    description = f"Refund of order {order_id}" + (f": {reason}" if reason else "")

    async def refund_steps(conn: AsyncConnection) -> StoredResponse:
        effects.begin()
        now = utcnow()
        order = await visible_order(conn, caller, order_id, lock=True)
        if order.merchant_id != caller.id:
            raise Forbidden("Only the order's merchant can refund it")
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
        effects.transitions.append((order.id, OrderStatus.REFUNDED, order.payment_method))
        product = await stock.return_units(conn, order.product_id, order.quantity, now=now)
        effects.products.append((product.id, product.version))
        amount = Money(order.amount, order.currency)
        if order.payment_method is PaymentMethod.GATEWAY:
            legs = [(await _wallet_of(conn, order.merchant_id), False)]
            await payments_repo.add_refund(
                conn,
                order_id=order.id,
                payment_intent_id=order.stripe_payment_intent_id or "",
                amount=order.amount,
                currency=order.currency,
                reason=description,
            )
            effects.refunds.append(order.id)
        else:
            ids = await wallets_repo.wallet_ids(conn, [order.user_id, order.merchant_id])
            legs = sorted([(ids[order.merchant_id], False), (ids[order.user_id], True)])
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
            effects.wallets.append(movement.wallet)
        effects.end()
        return render(refunded)

    response = await idempotency.run(
        ctx, scope, refund_steps, instance=instance, request_id=request_id
    )
    if not response.replayed:  # a replay changed nothing; an earlier attempt's record is void
        await effects.apply(ctx)
    return response


async def _wallet_of(conn: AsyncConnection, user_id: uuid.UUID) -> uuid.UUID:
    return (await wallets_repo.wallet_ids(conn, [user_id]))[user_id]


async def visible_order(
    conn: AsyncConnection, caller: User, order_id: uuid.UUID, *, lock: bool = False
) -> Order:
    """The order if the caller is its buyer or its merchant; NOT_FOUND for anyone else, exactly
    as for an order that does not exist. `lock` row-locks it (the first lock of a refund)."""
    order = await (repository.lock if lock else repository.get)(conn, order_id)
    if order is None or caller.id not in (order.user_id, order.merchant_id):
        raise NotFound("Order not found")
    return order


async def get_order(ctx: AppContext, caller: User, order_id: uuid.UUID) -> Order:
    return await ctx.db.read(lambda conn: visible_order(conn, caller, order_id))
