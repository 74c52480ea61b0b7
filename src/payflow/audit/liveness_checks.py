"""Checks that what payflow knows must happen has happened in time (numbered 7 in the report,
beyond the six invariants of docs/api.md, which are about state alone):
- a gateway order whose checkout is known to be paid (a verified event said so) is not still
  PENDING once its reservation expired and the sweeper has had a round to settle it;
- a gateway refund still PENDING is not overdue: its next attempt was due, and a sweeper round
  has passed since.
Either means money waits on something that is stuck: a payment not credited, a refund not sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.checks import Violation
from payflow.orders.models import OrderStatus, PaymentMethod, orders
from payflow.payments.models import gateway_refunds, webhook_events

LIVENESS = 7
# The events that announce a paid checkout (their session's payment_status is "paid").
_PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


async def check_paid_orders_settled(
    conn: AsyncConnection, now: datetime, grace: timedelta
) -> list[Violation]:
    payload = webhook_events.c.payload
    paid_event = sa.exists().where(
        webhook_events.c.type.in_(_PAID_EVENTS),
        payload["id"].as_string() == orders.c.stripe_session_id,
        payload["payment_status"].as_string() == "paid",
    )
    stuck = sa.select(orders.c.id, orders.c.stripe_session_id).where(
        orders.c.payment_method == PaymentMethod.GATEWAY.value,
        orders.c.status == OrderStatus.PENDING.value,
        orders.c.reservation_expires_at < now - grace,
        paid_event,
    )
    return [
        Violation(
            LIVENESS,
            f"order {row.id}",
            f"checkout {row.stripe_session_id} was paid, yet the order is still PENDING "
            "past its expiry and a sweeper round",
        )
        for row in (await conn.execute(stuck.order_by(orders.c.id))).all()
    ]


async def check_refunds_not_overdue(
    conn: AsyncConnection, now: datetime, grace: timedelta
) -> list[Violation]:
    overdue = sa.select(
        gateway_refunds.c.order_id, gateway_refunds.c.attempts, gateway_refunds.c.last_error
    ).where(
        gateway_refunds.c.status == "PENDING",
        gateway_refunds.c.next_attempt_at < now - grace,
    )
    return [
        Violation(
            LIVENESS,
            f"refund of order {row.order_id}",
            f"PENDING past its next attempt and a sweeper round ({row.attempts} attempts, "
            f"last error: {row.last_error or 'none'})",
        )
        for row in (await conn.execute(overdue.order_by(gateway_refunds.c.order_id))).all()
    ]
