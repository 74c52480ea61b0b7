"""The wallet purchase step by step: the same `PurchaseRequest → Purchase` as purchase_statement.py.

Runs on SQLite, and on PostgreSQL after the one statement refused, to find out why. Inside the
caller's transaction: read the parties, take the stock (the product row lock), then debit the
buyer and credit the merchant in ascending wallet-id order (the global lock order), then insert
the COMPLETED order. A rule that says no raises its domain error (NotFound, OutOfStock,
ProductUnavailable, WalletLocked, InsufficientFunds, BalanceLimitExceeded, …) after earlier steps
may have written: the caller must roll the transaction back.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.errors import NotFound
from payflow.core.money import Money
from payflow.orders import repository
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.purchase_statement import Purchase, PurchaseRequest
from payflow.products import stock
from payflow.products.errors import ProductUnavailable
from payflow.wallets import repository as wallets_repo
from payflow.wallets.errors import WalletLocked
from payflow.wallets.models import ReferenceType, TransactionType


async def purchase(conn: AsyncConnection, request: PurchaseRequest) -> Purchase:
    """The purchase inside the caller's transaction; `wallets` in ascending wallet-id order."""
    now = request.now
    parties = await repository.purchase_parties(conn, request.product_id, request.buyer_id)
    if parties is None:
        raise NotFound("Product not found")
    merchant_id, buyer_wallet, merchant_wallet = parties
    product = await stock.take_for_buyer(
        conn, request.product_id, request.quantity, request.buyer_id, reserve=False, now=now
    )
    amount = Money(product.price * request.quantity, product.currency)
    legs = sorted(
        [
            (buyer_wallet, False, TransactionType.PAYMENT),
            (merchant_wallet, True, TransactionType.EARNING),
        ]
    )
    wallets = []
    for wallet_id, credit, kind in legs:
        try:
            movement = await wallets_repo.change_balance(
                conn,
                amount,
                wallet_id=wallet_id,
                credit=credit,
                type=kind,
                reference_type=ReferenceType.ORDER,
                reference_id=request.order_id,
                now=now,
            )
        except WalletLocked as locked:
            if credit:  # the merchant's wallet, not the buyer's
                raise ProductUnavailable("The merchant cannot accept payments now") from locked
            raise
        wallets.append(movement.wallet)
    order = await repository.insert_order(
        conn,
        order_id=request.order_id,
        user_id=request.buyer_id,
        product_id=request.product_id,
        merchant_id=merchant_id,
        quantity=request.quantity,
        unit_price=product.price,
        currency=product.currency,
        payment_method=PaymentMethod.WALLET,
        status=OrderStatus.COMPLETED,
        idempotency_key=request.idempotency_key,
        now=now,
    )
    return Purchase(order=order, product_version=product.version, wallets=wallets)
