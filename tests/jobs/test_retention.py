"""Retention (jobs/retention.py): what is kept only for a while is deleted once it is due, in
bounded batches, and a POST /orders key whose record is pruned can place a new order."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.service import run_audit
from payflow.auth.models import refresh_tokens
from payflow.core.idempotency import RETENTION
from payflow.core.idempotency_models import idempotency_records
from payflow.core.tables import utcnow
from payflow.jobs.retention import (
    REFRESH_TOKEN_GRACE,
    WEBHOOK_EVENT_RETENTION,
    PruneReport,
    prune_expired,
)
from payflow.orders.models import orders
from payflow.payments.models import webhook_events
from payflow.wiring import AppContext
from tests.db_helpers import with_conn
from tests.support import Account, assert_problem, create_product, deposit, register


def _context(app: FastAPI) -> AppContext:
    ctx: AppContext = app.state.context
    return ctx


async def _execute(app: FastAPI, statement: Any) -> int:
    async def work(conn: AsyncConnection) -> int:
        return (await conn.execute(statement)).rowcount

    return await _context(app).db.transaction(with_conn(work))


async def _scalars(app: FastAPI, query: Any) -> list[Any]:
    async def work(conn: AsyncConnection) -> list[Any]:
        return list((await conn.execute(query)).scalars())

    return await _context(app).db.read(work)


async def _expire_key(app: FastAPI, account: Account, key: str) -> None:
    """Make the key's record due for pruning: its retention ran out a minute ago."""
    changed = await _execute(
        app,
        sa.update(idempotency_records)
        .where(idempotency_records.c.user_id == uuid.UUID(account.id))
        .where(idempotency_records.c.key == key)
        .values(expires_at=utcnow() - timedelta(minutes=1)),
    )
    assert changed == 1


async def _keys(app: FastAPI) -> list[str]:
    return sorted(await _scalars(app, sa.select(idempotency_records.c.key)))


async def _deposit(
    client: httpx.AsyncClient, account: Account, key: str, amount: str = "1.00"
) -> httpx.Response:
    return await client.post(
        "/wallet/deposit",
        json={"amount": amount},
        headers={**account.headers, "Idempotency-Key": key},
    )


async def _buy(
    client: httpx.AsyncClient, buyer: Account, product_id: str, key: str
) -> httpx.Response:
    return await client.post(
        "/orders",
        json={"productId": product_id, "paymentMethod": "WALLET"},
        headers={**buyer.headers, "Idempotency-Key": key},
    )


async def test_idempotency_records_past_their_retention_are_deleted_fresh_ones_kept(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    first = await _deposit(client, account, "old-deposit")
    assert (await _deposit(client, account, "new-deposit")).status_code == 201
    await _expire_key(app, account, "old-deposit")

    report = await prune_expired(_context(app).db)

    assert report.idempotency_records == 1
    assert await _keys(app) == ["new-deposit"]
    # The fresh key still replays; the pruned one is a new request (docs/api.md keeps keys 24 h).
    assert (await _deposit(client, account, "new-deposit")).headers["idempotent-replayed"] == "true"
    again = await _deposit(client, account, "old-deposit")
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["transaction"]["id"] != first.json()["transaction"]["id"]
    assert RETENTION >= timedelta(hours=24)


async def test_an_order_key_reused_after_its_record_was_pruned_places_a_new_order(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant, buyer = await register(client, role="MERCHANT"), await register(client)
    await deposit(client, buyer, "100.00")
    product = await create_product(client, merchant, price="10.00", units=1)
    bought = await _buy(client, buyer, product["id"], "order-key")
    refused = await _buy(client, buyer, product["id"], "refused-key")  # a FAILED order holds it
    assert bought.status_code == 201, bought.text
    assert_problem(refused, 409, "OUT_OF_STOCK")
    for key in ("order-key", "refused-key"):
        await _expire_key(app, buyer, key)

    assert (await prune_expired(_context(app).db)).idempotency_records == 2

    # Neither order holds its key any more: each key places a new order.
    held = await _scalars(app, sa.select(orders.c.idempotency_key).where(orders.c.id.is_not(None)))
    assert held == [None, None]
    restocked = await client.patch(
        f"/products/{product['id']}", json={"availableUnits": 2}, headers=merchant.headers
    )
    assert restocked.status_code == 200, restocked.text
    for key, earlier in (("order-key", bought), ("refused-key", refused)):
        again = await _buy(client, buyer, product["id"], key)
        assert again.status_code == 201, again.text
        assert "idempotent-replayed" not in again.headers
        assert again.json()["id"] != earlier.json().get("id")
    assert (await _buy(client, buyer, product["id"], "order-key")).headers[
        "idempotent-replayed"
    ] == "true"
    report = await run_audit(_context(app).db)
    assert report.ok, report.as_text()


async def test_refresh_tokens_expired_for_longer_than_the_grace_are_deleted(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    long_gone, recently, live = [await register(client) for _ in range(3)]
    now = utcnow()
    for account, expires_at in (
        (long_gone, now - REFRESH_TOKEN_GRACE - timedelta(minutes=1)),
        (recently, now - REFRESH_TOKEN_GRACE + timedelta(minutes=1)),
    ):
        await _execute(
            app,
            sa.update(refresh_tokens)
            .where(refresh_tokens.c.user_id == uuid.UUID(account.id))
            .values(expires_at=expires_at),
        )

    report = await prune_expired(_context(app).db)

    assert report == PruneReport(idempotency_records=0, refresh_tokens=1, webhook_events=0)
    owners = await _scalars(app, sa.select(refresh_tokens.c.user_id))
    assert sorted(owners) == sorted([uuid.UUID(recently.id), uuid.UUID(live.id)])
    refreshed = await client.post("/auth/refresh", json={"refreshToken": live.refresh_token})
    assert refreshed.status_code == 200, refreshed.text


async def test_processed_webhook_events_older_than_the_retention_are_deleted(
    app: FastAPI,
) -> None:
    now = utcnow()
    old = now - WEBHOOK_EVENT_RETENTION - timedelta(minutes=1)
    young = now - WEBHOOK_EVENT_RETENTION + timedelta(minutes=1)
    for event_id, received_at, processed in (
        ("evt_old_processed", old, True),
        ("evt_old_unprocessed", old, False),  # its processing failed: a redelivery retries it
        ("evt_young_processed", young, True),
    ):
        await _execute(
            app,
            sa.insert(webhook_events).values(
                id=uuid.uuid4(),
                provider_event_id=event_id,
                type="checkout.session.completed",
                payload={},
                received_at=received_at,
                processed_at=received_at if processed else None,
                outcome="ignored" if processed else None,
                created_at=received_at,
                updated_at=received_at,
            ),
        )

    report = await prune_expired(_context(app).db)

    assert report == PruneReport(idempotency_records=0, refresh_tokens=0, webhook_events=1)
    kept = await _scalars(app, sa.select(webhook_events.c.provider_event_id))
    assert sorted(kept) == ["evt_old_unprocessed", "evt_young_processed"]


async def test_pruning_deletes_in_batches_and_stops_after_the_allowed_number(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    keys = [f"deposit-{n}" for n in range(5)]
    for key in keys:
        assert (await _deposit(client, account, key)).status_code == 201
        await _expire_key(app, account, key)
    ctx = _context(app)

    first = await prune_expired(ctx.db, batch_size=2, max_batches=2)
    assert first.idempotency_records == 4
    assert len(await _keys(app)) == 1
    second = await prune_expired(ctx.db, batch_size=2, max_batches=2)
    assert second.idempotency_records == 1
    assert await _keys(app) == []
    assert (await prune_expired(ctx.db, batch_size=2, max_batches=2)).idempotency_records == 0
