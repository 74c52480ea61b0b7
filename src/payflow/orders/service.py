"""Wallet purchases and refunds (docs/api.md, Orders), and reading orders.

A wallet purchase is one transaction: take the stock, debit the buyer, credit the merchant, write
the COMPLETED order and both ledger rows, store the idempotency record, commit; then refresh the
caches. Rows are locked in one global order — the order row (refunds only), then the product, then
wallets by ascending wallet id — so purchases, refunds, deposits and withdrawals cannot deadlock.
A business failure rolls all of that back and leaves only a FAILED order recording why.

The purchase has two implementations with the same input and output (`PurchaseRequest →
Purchase`): one PostgreSQL statement (purchase_statement.py), tried first on PostgreSQL, and the
step-by-step transaction (purchase_steps.py), which runs on SQLite and after the statement
refused, to find out why. A differential test holds them equal.
"""

from __future__ import annotations

import contextlib
import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.errors import DomainError, Forbidden, NotFound
from payflow.core.idempotency import IdempotentRequest, runner
from payflow.core.money import Money
from payflow.core.tables import utcnow
from payflow.core.unit_of_work import UnitOfWork
from payflow.orders import purchase_statement, purchase_steps, repository
from payflow.orders.effects import Effects
from payflow.orders.errors import OrderStateConflict, ReservationLimitExceeded
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.purchase_statement import Purchase, PurchaseRefused, PurchaseRequest
from payflow.orders.records import Order
from payflow.payments import repository as payments_repo
from payflow.products import stock
from payflow.products.errors import OutOfStock, ProductUnavailable
from payflow.users.records import User
from payflow.wallets import repository as wallets_repo
from payflow.wallets.errors import InsufficientFunds, WalletLocked
from payflow.wallets.models import ReferenceType, TransactionType
from payflow.wiring import AppContext

# Failures that leave a FAILED order behind (the product exists; the purchase could not be made).
_RECORDED_FAILURES = (
    OutOfStock,
    InsufficientFunds,
    ProductUnavailable,
    WalletLocked,
    ReservationLimitExceeded,
)

log = structlog.get_logger("payflow.orders")


def _record_sale(effects: Effects, made: Purchase) -> None:
    effects.products.append((made.order.product_id, made.product_version))
    effects.wallets.extend(made.wallets)
    effects.transitions.append((made.order.id, OrderStatus.COMPLETED, PaymentMethod.WALLET))


async def buy_with_wallet(
    ctx: AppContext,
    buyer: User,
    product_id: uuid.UUID,
    quantity: int,
    request: IdempotentRequest[Order],
) -> Order:
    """Buy `quantity` units with the buyer's wallet, in one transaction (see the module doc)."""
    order_id = uuid.uuid4()
    key = request.scope.key if request.scope else None

    def purchase_request() -> PurchaseRequest:
        return PurchaseRequest(
            order_id=order_id,
            buyer_id=buyer.id,
            product_id=product_id,
            quantity=quantity,
            idempotency_key=key,
            now=utcnow(),
        )

    async def one_statement(uow: UnitOfWork) -> Order:
        made = await purchase_statement.purchase(uow.conn, purchase_request())
        _record_sale(Effects.of(ctx, uow), made)
        return made.order

    async def step_by_step(uow: UnitOfWork) -> Order:
        made = await purchase_steps.purchase(uow.conn, purchase_request())
        _record_sale(Effects.of(ctx, uow), made)
        return made.order

    async def record_failure(uow: UnitOfWork, error: DomainError) -> None:
        await record_failed_order(
            ctx, uow, error, order_id, buyer.id, product_id, quantity, PaymentMethod.WALLET, key
        )

    made: Purchase | None = None
    async with ctx.purchase_gate.admit(product_id):
        if ctx.db.driver is not None:
            # PostgreSQL: the common case in one statement. A refusal wrote nothing (and released
            # the key it claimed): the step-by-step purchase then finds out why and records it.
            with contextlib.suppress(PurchaseRefused):
                if request.scope is not None:
                    return await runner.run(
                        ctx.db, request, one_statement, record_failure=record_failure
                    )
                made = await purchase_statement.purchase_alone(ctx.db.driver, purchase_request())
        if made is None:
            return await runner.run(ctx.db, request, step_by_step, record_failure=record_failure)
    # The statement was a unit of work of its own (autocommit): apply its effects now, outside
    # the gate, as the unit of work would after its commit.
    effects = Effects(ctx)
    _record_sale(effects, made)
    await effects.apply()
    return made.order


async def record_failed_order(
    ctx: AppContext,
    uow: UnitOfWork,
    error: DomainError,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    product_id: uuid.UUID,
    quantity: int,
    method: PaymentMethod,
    idempotency_key: str | None,
) -> None:
    """Leave a FAILED order saying why a purchase of an existing product could not be made."""
    if not isinstance(error, _RECORDED_FAILURES):
        return
    conn = uow.conn
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
        idempotency_key=idempotency_key,
        now=utcnow(),
        failure_reason=f"{error.code}: {error.detail}",
    )

    async def count() -> None:
        log.info("order.failed", order_id=str(order_id), reason=error.code)
        ctx.metrics.orders.labels(OrderStatus.FAILED.value, method.value).inc()

    uow.after_commit(count)


async def refund(
    ctx: AppContext,
    caller: User,
    order_id: uuid.UUID,
    reason: str | None,
    request: IdempotentRequest[Order],
) -> Order:
    """Refund a COMPLETED order, by its merchant (docs/api.md, Orders): in one transaction the order becomes
    REFUNDED, its units return to stock and the merchant is debited; the buyer is credited (wallet
    orders) or the payment is refunded through the gateway after the commit (gateway orders)."""
    description = f"Refund of order {order_id}" + (f": {reason}" if reason else "")

    async def refund_steps(uow: UnitOfWork) -> Order:
        conn, effects = uow.conn, Effects.of(ctx, uow)
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
                reference_type=ReferenceType.ORDER,
                reference_id=order.id,
                now=now,
            )
            effects.wallets.append(movement.wallet)
        return refunded

    return await runner.run(ctx.db, request, refund_steps)


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
