"""Invariants 4 and 6 (docs/api.md): orders against the ledger, and gateway objects against orders."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.checks import Violation
from payflow.orders.models import OrderStatus, PaymentMethod, orders
from payflow.payments.models import gateway_refunds, webhook_events
from payflow.wallets.models import ReferenceType, TransactionType, wallet_transactions

# (status, method) → the ledger rows (PAYMENT, EARNING, REFUND) an order must have.
_EXPECTED: dict[tuple[OrderStatus, PaymentMethod], tuple[int, int, int]] = {
    (OrderStatus.COMPLETED, PaymentMethod.WALLET): (1, 1, 0),
    (OrderStatus.COMPLETED, PaymentMethod.GATEWAY): (0, 1, 0),
    (OrderStatus.REFUNDED, PaymentMethod.WALLET): (1, 1, 2),
}


def _count(kind: TransactionType) -> sa.ColumnElement[int]:
    return sa.func.coalesce(
        sa.func.sum(sa.case((wallet_transactions.c.type == kind.value, 1), else_=0)), 0
    )


async def check_order_ledger(conn: AsyncConnection) -> list[Violation]:
    t = wallet_transactions
    per_order = (
        sa.select(
            orders.c.id,
            orders.c.status,
            orders.c.payment_method,
            _count(TransactionType.PAYMENT).label("payments"),
            _count(TransactionType.EARNING).label("earnings"),
            _count(TransactionType.REFUND).label("refunds"),
            _count(TransactionType.DEPOSIT).label("deposits"),
            _count(TransactionType.WITHDRAWAL).label("withdrawals"),
            sa.func.coalesce(
                sa.func.sum(sa.case((t.c.amount != orders.c.amount, 1), else_=0)), 0
            ).label("wrong_amounts"),
        )
        .select_from(orders)
        .outerjoin(
            t, sa.and_(t.c.reference_type == ReferenceType.ORDER, t.c.reference_id == orders.c.id)
        )
        .group_by(orders.c.id, orders.c.status, orders.c.payment_method)
        .order_by(orders.c.id)
    )
    violations = []
    for row in (await conn.execute(per_order)).all():
        status, method = OrderStatus(row.status), PaymentMethod(row.payment_method)
        found = (row.payments, row.earnings, row.refunds)
        if (status, method) == (OrderStatus.REFUNDED, PaymentMethod.GATEWAY):
            # the merchant is debited only if it had been credited
            ok = row.payments == 0 and row.earnings == row.refunds and row.earnings <= 1
        else:
            ok = found == _EXPECTED.get((status, method), (0, 0, 0))
        if not ok or row.wrong_amounts or row.deposits or row.withdrawals:
            violations.append(
                Violation(
                    4,
                    f"order {row.id}",
                    f"{status} {method} order has {row.payments} PAYMENT, {row.earnings} EARNING,"
                    f" {row.refunds} REFUND rows ({row.wrong_amounts} of another amount)",
                )
            )
    orphans = sa.select(t.c.id, t.c.reference_id).where(
        t.c.reference_type == ReferenceType.ORDER,
        ~sa.exists().where(orders.c.id == t.c.reference_id),
    )
    for row in (await conn.execute(orphans)).all():
        violations.append(
            Violation(4, f"ledger row {row.id}", f"references missing order {row.reference_id}")
        )
    return violations


async def check_gateway_effects(conn: AsyncConnection) -> list[Violation]:
    """Invariant 6: each Stripe session, payment and webhook event maps to at most one order
    effect — one order per session and per payment intent, one refund per order, one inbox row
    per event (the last three are also unique constraints; the audit checks them anyway)."""
    violations: list[Violation] = []
    for column, what in (
        (orders.c.stripe_session_id, "checkout session"),
        (orders.c.stripe_payment_intent_id, "payment intent"),
    ):
        shared = (
            sa.select(column, sa.func.count().label("n"))
            .where(column.is_not(None))
            .group_by(column)
            .having(sa.func.count() > 1)
        )
        violations.extend(
            Violation(6, f"{what} {row[0]}", f"used by {row.n} orders")
            for row in (await conn.execute(shared)).all()
        )
    refunds = (
        sa.select(gateway_refunds.c.order_id, sa.func.count().label("n"))
        .group_by(gateway_refunds.c.order_id)
        .having(sa.func.count() > 1)
    )
    violations.extend(
        Violation(6, f"order {row.order_id}", f"{row.n} gateway refunds")
        for row in (await conn.execute(refunds)).all()
    )
    events = (
        sa.select(webhook_events.c.provider_event_id, sa.func.count().label("n"))
        .group_by(webhook_events.c.provider_event_id)
        .having(sa.func.count() > 1)
    )
    violations.extend(
        Violation(6, f"event {row.provider_event_id}", f"recorded {row.n} times")
        for row in (await conn.execute(events)).all()
    )
    unpaid = sa.select(orders.c.id).where(
        orders.c.payment_method == PaymentMethod.GATEWAY.value,
        orders.c.status == OrderStatus.COMPLETED.value,
        orders.c.stripe_payment_intent_id.is_(None),
    )
    violations.extend(
        Violation(6, f"order {row.id}", "COMPLETED gateway order without a payment")
        for row in (await conn.execute(unpaid)).all()
    )
    return violations
