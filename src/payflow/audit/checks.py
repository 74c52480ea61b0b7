"""The invariants of docs/api.md as SQL checks. Each check returns the violations it finds.

Add a check by writing `async def check_x(conn) -> list[Violation]` and listing it in CHECKS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.orders.models import OrderStatus, PaymentMethod, orders
from payflow.products.models import products, stock_adjustments
from payflow.wallets.models import (
    ReferenceType,
    TransactionStatus,
    TransactionType,
    wallet_transactions,
    wallets,
)


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: int
    subject: str
    detail: str


_INCREASES = (TransactionType.DEPOSIT.value, TransactionType.EARNING.value)
_DECREASES = (TransactionType.WITHDRAWAL.value, TransactionType.PAYMENT.value)
_completed = wallet_transactions.c.status == TransactionStatus.COMPLETED.value


async def check_ledger_rows(conn: AsyncConnection) -> list[Violation]:
    """Invariant 1, row by row: each completed row continues its wallet's chain and moves the
    balance by exactly its amount, in the direction its type says."""
    t = wallet_transactions
    previous_after = sa.func.lag(t.c.balance_after, 1, 0).over(
        partition_by=t.c.wallet_id, order_by=t.c.seq
    )
    chained = (
        sa.select(
            t.c.wallet_id,
            t.c.seq,
            t.c.type,
            t.c.amount,
            t.c.balance_before,
            t.c.balance_after,
            previous_after.label("previous_after"),
        )
        .where(_completed)
        .subquery()
    )
    delta = chained.c.balance_after - chained.c.balance_before
    broken = sa.select(chained).where(
        sa.or_(
            chained.c.balance_before != chained.c.previous_after,
            sa.func.abs(delta) != chained.c.amount,
            sa.and_(chained.c.type.in_(_INCREASES), delta <= 0),
            sa.and_(chained.c.type.in_(_DECREASES), delta >= 0),
        )
    )
    violations = []
    for row in (await conn.execute(broken.order_by(chained.c.wallet_id, chained.c.seq))).all():
        violations.append(
            Violation(
                1,
                f"wallet {row.wallet_id}",
                f"ledger row seq {row.seq} ({row.type} {row.amount}): before {row.balance_before},"
                f" after {row.balance_after}, previous row ended at {row.previous_after}",
            )
        )
    return violations


async def check_balances_match_ledger(conn: AsyncConnection) -> list[Violation]:
    """Invariant 1, per wallet: the last balance_after and the signed sum equal the balance."""
    t = wallet_transactions
    last_after = (
        sa.select(t.c.balance_after)
        .where(t.c.wallet_id == wallets.c.id, _completed)
        .order_by(t.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    signed_sum = (
        sa.select(sa.func.coalesce(sa.func.sum(t.c.balance_after - t.c.balance_before), 0))
        .where(t.c.wallet_id == wallets.c.id, _completed)
        .scalar_subquery()
    )
    query = sa.select(
        wallets.c.id,
        wallets.c.balance,
        sa.func.coalesce(last_after, 0).label("last_after"),
        signed_sum.label("signed_sum"),
    ).subquery()
    mismatched = sa.select(query).where(
        sa.or_(query.c.balance != query.c.last_after, query.c.balance != query.c.signed_sum)
    )
    return [
        Violation(
            1,
            f"wallet {row.id}",
            f"balance {row.balance} but the ledger ends at {row.last_after}"
            f" and sums to {row.signed_sum}",
        )
        for row in (await conn.execute(mismatched.order_by(query.c.id))).all()
    ]


async def check_nothing_negative(conn: AsyncConnection) -> list[Violation]:
    """Invariant 2: no wallet balance and no product's available or reserved stock below zero."""
    rows = await conn.execute(
        sa.select(wallets.c.id, wallets.c.balance).where(wallets.c.balance < 0)
    )
    violations = [
        Violation(2, f"wallet {row.id}", f"negative balance {row.balance}") for row in rows
    ]
    stock = await conn.execute(
        sa.select(products.c.id, products.c.available_units, products.c.reserved_units)
        .where(sa.or_(products.c.available_units < 0, products.c.reserved_units < 0))
        .order_by(products.c.id)
    )
    violations.extend(
        Violation(
            2,
            f"product {row.id}",
            f"negative stock: {row.available_units} available, {row.reserved_units} reserved",
        )
        for row in stock
    )
    return violations


async def check_conservation(conn: AsyncConnection) -> list[Violation]:
    """Invariant 3: money enters only by deposits and gateway payments credited to merchants, and
    leaves only by withdrawals and merchants' refunds of gateway orders. (A wallet order moves
    money between two wallets: its PAYMENT and EARNING, or its two REFUNDs, cancel out.)"""
    t = wallet_transactions
    total_balance = (
        await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(wallets.c.balance), 0)))
    ).scalar_one()

    def total(kind: TransactionType, *, gateway: bool = False) -> sa.ScalarSelect[int]:
        query = sa.select(sa.func.coalesce(sa.func.sum(t.c.amount), 0)).where(
            t.c.type == kind.value, _completed
        )
        if gateway:
            query = query.where(
                t.c.reference_type == ReferenceType.ORDER,
                t.c.reference_id.in_(
                    sa.select(orders.c.id).where(
                        orders.c.payment_method == PaymentMethod.GATEWAY.value
                    )
                ),
            )
        return query.scalar_subquery()

    row = (
        await conn.execute(
            sa.select(
                total(TransactionType.DEPOSIT),
                total(TransactionType.WITHDRAWAL),
                total(TransactionType.EARNING, gateway=True),
                total(TransactionType.REFUND, gateway=True),
            )
        )
    ).one()
    deposits, withdrawals, earned, refunded = (int(value) for value in row)
    expected = deposits - withdrawals + earned - refunded
    if int(total_balance) == expected:
        return []
    return [
        Violation(
            3,
            "all wallets",
            f"balances sum to {total_balance}, but deposits {deposits} - withdrawals"
            f" {withdrawals} + gateway earnings {earned} - gateway refunds {refunded}"
            f" = {expected}",
        )
    ]


def sold_units_subquery() -> sa.ScalarSelect[int]:
    """Units of the product (`products.c.id`, correlated) in COMPLETED orders: the units sold.

    Reserved units of PENDING and PAYMENT_PROCESSING orders are in `reserved_units`; units of
    FAILED, CANCELLED and REFUNDED orders went back on sale.
    """
    return (
        sa.select(sa.func.coalesce(sa.func.sum(orders.c.quantity), 0))
        .where(
            orders.c.product_id == products.c.id,
            orders.c.status == OrderStatus.COMPLETED.value,
        )
        .scalar_subquery()
    )


async def check_stock_conservation(conn: AsyncConnection) -> list[Violation]:
    """Invariant 5: for each product, available + reserved + sold = every unit its merchant
    stocked (the stock adjustments, the initial units included)."""
    stocked = (
        sa.select(sa.func.coalesce(sa.func.sum(stock_adjustments.c.delta), 0))
        .where(stock_adjustments.c.product_id == products.c.id)
        .scalar_subquery()
    )
    per_product = sa.select(
        products.c.id,
        products.c.available_units,
        products.c.reserved_units,
        sold_units_subquery().label("sold"),
        stocked.label("stocked"),
    ).subquery()
    p = per_product.c
    broken = sa.select(per_product).where(
        p.available_units + p.reserved_units + p.sold != p.stocked
    )
    return [
        Violation(
            5,
            f"product {row.id}",
            f"{row.available_units} available + {row.reserved_units} reserved + {row.sold} sold"
            f" != {row.stocked} stocked",
        )
        for row in (await conn.execute(broken.order_by(p.id))).all()
    ]


Check = Callable[[AsyncConnection], Awaitable[list[Violation]]]

CHECKS: list[tuple[int, str, Check]] = [
    (1, "every ledger chain is continuous and moves by its amounts", check_ledger_rows),
    (1, "every balance equals its ledger", check_balances_match_ledger),
    (2, "no balance and no stock is negative", check_nothing_negative),
    (3, "money is conserved", check_conservation),
    (5, "every product's stock is accounted for", check_stock_conservation),
]
