"""The gateway refund outbox (issue 13, defect 5): backoff between attempts, a final FAILED state
for refunds Stripe refuses for good, no starvation of new refunds by stuck ones, and an audit that
names a refund left overdue."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.service import run_audit
from payflow.config import Settings
from payflow.core.tables import utcnow
from payflow.orders import repository as orders_repo
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.payments import repository
from payflow.payments.models import gateway_refunds
from payflow.payments.refunds import retry_delay
from payflow.wiring import AppContext
from tests.db_helpers import with_conn
from tests.payments.live import Live, live_fixture  # noqa: F401
from tests.support import create_product, register


async def _completed_gateway_order(live: Live) -> tuple[Any, Any, str, str]:
    """(merchant, buyer, order id, payment intent id) of a paid, COMPLETED gateway order."""
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="12.50", units=2)
    body = await live.buy(buyer, product["id"])
    await live.act(body["sessionId"], "pay")
    await live.wait_for(buyer, body["order"]["id"], "COMPLETED")
    intent = (await live.session(body["sessionId"]))["payment_intent"]
    return merchant, buyer, body["order"]["id"], intent


def test_the_wait_between_attempts_doubles_up_to_its_cap() -> None:
    waits = [retry_delay(attempt, 30, 3600).total_seconds() for attempt in range(1, 10)]

    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert retry_delay(10_000, 30, 3600) == timedelta(hours=1)  # no overflow, however many


async def test_a_refund_stripe_refuses_for_good_ends_failed_with_its_reason(live: Live) -> None:
    merchant, _buyer, order_id, intent = await _completed_gateway_order(live)
    # Refunded already, outside payflow (say, from Stripe's dashboard): Stripe will refuse.
    await live.context.gateway.refund(intent, 1250, idempotency_key=f"dashboard-{order_id}")

    refunded = await live.api.post(f"/orders/{order_id}/refund", headers=merchant.headers)

    assert refunded.status_code == 200, refunded.text
    row = await live.refund_settled(order_id)
    assert row["status"] == "FAILED"
    assert "charge_already_refunded" in row["last_error"]
    assert row["attempts"] == 1
    assert row["finished_at"] is not None
    assert row["next_attempt_at"] is None
    order = await live.order(merchant, order_id)
    assert order["status"] == "REFUNDED"
    assert "REFUND_FAILED" in order["failureReason"]
    assert "charge_already_refunded" in order["failureReason"]
    metrics = await httpx.AsyncClient(base_url=live.base).get("/metrics")
    assert 'payflow_gateway_refunds_total{outcome="failed"} 1.0' in metrics.text

    for _ in range(3):  # more sweeps: it is never sent again
        await live.sweep()
    assert (await live.refund_rows(order_id))[0]["attempts"] == 1
    assert [refund.amount for refund in live.sandbox_refunds(intent)] == [1250]
    await live.audit_ok()


async def test_a_refund_the_gateway_keeps_failing_waits_longer_after_each_attempt(
    live: Live,
) -> None:
    merchant, _buyer, order_id, intent = await _completed_gateway_order(live)
    armed = await live.control.post("/faults", params={"mode": "error"})
    assert armed.status_code == 200, armed.text

    refunded = await live.api.post(f"/orders/{order_id}/refund", headers=merchant.headers)
    assert refunded.status_code == 200, refunded.text

    base = live.settings.refund_retry_base_seconds
    cap = live.settings.refund_retry_max_seconds
    seen: dict[int, timedelta] = {}
    deadline = time.monotonic() + 15
    while len(seen) < 3:
        [row] = await live.refund_rows(order_id)
        wait = row["next_attempt_at"] - row["updated_at"]
        # (a wait of minutes is the lease of a claimed row being sent right now)
        if row["attempts"] and timedelta(0) < wait < timedelta(minutes=1):
            seen[row["attempts"]] = wait
        assert time.monotonic() < deadline, f"too few attempts: {row}"
        await asyncio.sleep(0.02)
    for attempts, wait in seen.items():
        assert wait == timedelta(seconds=min(cap, base * 2 ** (attempts - 1))), seen
    assert row["status"] == "PENDING"
    assert row["last_error"]
    assert live.sandbox_refunds(intent) == []

    cleared = await live.control.delete("/faults")
    assert cleared.status_code == 200
    assert (await live.refund_settled(order_id))["status"] == "SUCCEEDED"
    assert [refund.amount for refund in live.sandbox_refunds(intent)] == [1250]
    await live.audit_ok()


async def _failed_gateway_order(conn: AsyncConnection, buyer: str, product: dict[str, Any]) -> Any:
    """A FAILED gateway order (no money moved) to hang a refund row on."""
    return await orders_repo.insert_order(
        conn,
        order_id=uuid.uuid4(),
        user_id=uuid.UUID(buyer),
        product_id=uuid.UUID(product["id"]),
        merchant_id=uuid.UUID(product["merchantId"]),
        quantity=1,
        unit_price=100,
        currency="USD",
        payment_method=PaymentMethod.GATEWAY,
        status=OrderStatus.FAILED,
        idempotency_key=None,
        now=utcnow(),
    )


async def _refund_rows(
    ctx: AppContext, client: httpx.AsyncClient, count: int, due_in: timedelta
) -> list[uuid.UUID]:
    merchant, buyer = await register(client, role="MERCHANT"), await register(client)
    product = await create_product(client, merchant, units=1)

    async def work(conn: AsyncConnection) -> list[uuid.UUID]:
        ids = []
        for _ in range(count):
            order = await _failed_gateway_order(conn, buyer.id, product)
            await repository.add_refund(
                conn,
                order_id=order.id,
                payment_intent_id=f"pi_{uuid.uuid4().hex}",
                amount=100,
                currency="USD",
                reason="AMOUNT_MISMATCH",
            )
            ids.append(order.id)
        await conn.execute(
            sa.update(gateway_refunds)
            .where(gateway_refunds.c.order_id.in_(ids))
            .values(next_attempt_at=utcnow() + due_in)
        )
        return ids

    return await ctx.db.transaction(with_conn(work))


async def test_refunds_waiting_out_a_backoff_do_not_starve_a_new_one(
    settings: Settings, client: httpx.AsyncClient, app: FastAPI
) -> None:
    ctx: AppContext = app.state.context
    waiting = await _refund_rows(ctx, client, 60, due_in=timedelta(hours=1))
    [due] = await _refund_rows(ctx, client, 1, due_in=timedelta(0))
    now = utcnow()

    async def claim(conn: AsyncConnection) -> list[repository.PendingRefund]:
        return await repository.claim_due_refunds(
            conn, now=now, lease_until=now + timedelta(minutes=2), limit=50
        )

    claimed = await ctx.db.transaction(with_conn(claim))

    assert [refund.order_id for refund in claimed] == [due]
    assert len(waiting) == 60
    assert await ctx.db.transaction(with_conn(claim)) == []  # leased: not taken twice


async def test_the_audit_names_a_refund_left_overdue(
    settings: Settings, client: httpx.AsyncClient, app: FastAPI
) -> None:
    ctx: AppContext = app.state.context
    [overdue] = await _refund_rows(ctx, client, 1, due_in=-timedelta(minutes=10))
    await _refund_rows(ctx, client, 1, due_in=timedelta(minutes=10))  # waiting: not overdue

    report = await run_audit(ctx.db)

    named = [v for v in report.violations if v.invariant == 7]
    assert [v.subject for v in named] == [f"refund of order {overdue}"], report.as_text()
    assert "PENDING past its next attempt" in named[0].detail
