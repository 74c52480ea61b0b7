"""A gateway order's Idempotency-Key left behind by a process that died mid-order (docs/api.md).

`POST /orders` with GATEWAY claims its key (PROCESSING) and writes the PENDING order holding the key
in one transaction, then calls the gateway. If the process dies there, the key must not be stuck:
once its request is known dead, releasing it frees it from the order too, and the client's retry
places a new order. Until then a retry is a 409, and a key an order holds without its record is a
409 as well — never a 500.

The sweeper stays idle in these tests (its interval is an hour): the test alone decides when keys
are released.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.config import Settings
from payflow.core import idempotency
from payflow.core.db import Database
from payflow.core.idempotency import repository as idempotency_repo
from payflow.core.idempotency_models import idempotency_records
from payflow.core.tables import utcnow
from payflow.jobs.retention import STALE_IDEMPOTENCY, release_stale_keys
from payflow.orders import repository
from payflow.orders.models import OrderStatus, PaymentMethod, orders
from payflow.orders.records import CREATE_ORDER_ENDPOINT
from payflow.orders.schemas import CreateOrderRequest
from payflow.products import stock
from payflow.wiring import AppContext
from tests.db_helpers import with_conn
from tests.live_app import free_port, serve_app_in_thread
from tests.live_server import CLIENT_LIMITS
from tests.payments.live import Live, live_settings
from tests.support import Account, assert_problem, deposit

QUIET_SWEEPER = 3600.0  # seconds: never runs within a test


@pytest.fixture(name="live")
async def quiet_live(settings: Settings) -> AsyncIterator[Live]:
    """payflow with its sandbox on a free port, as tests.payments.live serves it, with an idle
    sweeper."""
    port = free_port()
    configured = live_settings(settings, port).model_copy(
        update={"sweeper_interval_seconds": QUIET_SWEEPER}
    )
    with serve_app_in_thread(configured, port) as (base, app):
        async with (
            httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, limits=CLIENT_LIMITS) as api,
            httpx.AsyncClient(
                base_url=f"{base}/sandbox/_sandbox", timeout=30, limits=CLIENT_LIMITS
            ) as control,
        ):
            db = Database(configured)
            try:
                yield Live(base, configured, app, api, control, db)
            finally:
                await db.dispose()


@pytest.fixture(name="jobs")
async def jobs_context(live: Live) -> AsyncIterator[AppContext]:
    """A context of the test's own on payflow's database, to run jobs as the sweeper would (the
    server's context belongs to the server's thread and event loop)."""
    context = AppContext.create(live.settings)
    try:
        yield context
    finally:
        await context.close()


def _scope(
    buyer: Account, product_id: str, key: str, quantity: int
) -> idempotency.IdempotencyScope:
    """The scope POST /orders gives this request (orders/router.py)."""
    body = CreateOrderRequest.model_validate(
        {"productId": product_id, "paymentMethod": "GATEWAY", "quantity": quantity}
    )
    scope = idempotency.scope_for(uuid.UUID(buyer.id), CREATE_ORDER_ENDPOINT, key, body)
    assert scope is not None
    return scope


async def _crash_after_reserving(
    live: Live, buyer: Account, product_id: str, key: str, *, quantity: int = 1, age: timedelta
) -> uuid.UUID:
    """What a gateway order leaves when its process dies right after its first transaction: the
    key claimed (PROCESSING, last touched `age` ago), the stock reserved and the PENDING order
    holding the key; no checkout session. Returns the order's id."""
    scope = _scope(buyer, product_id, key, quantity)
    order_id = uuid.uuid4()

    async def reserve(conn: AsyncConnection) -> None:
        now = utcnow()
        assert await idempotency_repo.claim(conn, scope, idempotency.PROCESSING)
        product = await stock.take_for_buyer(
            conn, uuid.UUID(product_id), quantity, scope.user_id, reserve=True, now=now
        )
        await repository.insert_order(
            conn,
            order_id=order_id,
            user_id=scope.user_id,
            product_id=product.id,
            merchant_id=product.merchant_id,
            quantity=quantity,
            unit_price=product.price,
            currency=product.currency,
            payment_method=PaymentMethod.GATEWAY,
            status=OrderStatus.PENDING,
            idempotency_key=key,
            now=now,
            reservation_expires_at=now + timedelta(seconds=live.settings.checkout_ttl_seconds),
        )
        await conn.execute(
            sa.update(idempotency_records)
            .where(idempotency_records.c.user_id == scope.user_id)
            .where(idempotency_records.c.key == key)
            .values(updated_at=now - age)
        )

    await live.db.transaction(with_conn(reserve))
    return order_id


async def _key_of(live: Live, order_id: uuid.UUID) -> str | None:
    async def read(conn: AsyncConnection) -> str | None:
        query = sa.select(orders.c.idempotency_key).where(orders.c.id == order_id)
        key: str | None = (await conn.execute(query)).scalar_one()
        return key

    return await live.db.read(read)


async def _records(live: Live, buyer: Account, key: str) -> int:
    async def count(conn: AsyncConnection) -> int:
        query = sa.select(sa.func.count()).where(
            idempotency_records.c.user_id == uuid.UUID(buyer.id), idempotency_records.c.key == key
        )
        return int((await conn.execute(query)).scalar_one())

    return await live.db.read(count)


async def _forget_record(live: Live, buyer: Account, key: str) -> None:
    """Delete the key's record alone, as the sweeper did before keys were released from orders."""

    async def delete(conn: AsyncConnection) -> None:
        result = await conn.execute(
            sa.delete(idempotency_records).where(
                idempotency_records.c.user_id == uuid.UUID(buyer.id),
                idempotency_records.c.key == key,
            )
        )
        assert result.rowcount == 1

    await live.db.transaction(with_conn(delete))


async def test_a_key_stuck_by_a_crash_answers_409_then_places_a_new_order_once_released(
    live: Live, jobs: AppContext
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=5)
    stale = STALE_IDEMPOTENCY + timedelta(minutes=1)
    crashed = await _crash_after_reserving(live, buyer, product["id"], "crash-1", age=stale)

    # Before the key is released: the first request may still be running, so a retry waits.
    early = await live.checkout(buyer, product["id"], key="crash-1")
    assert_problem(early, 409, "IDEMPOTENCY_KEY_IN_USE")
    assert await live.stock(product["id"]) == (4, 1)

    assert await release_stale_keys(jobs.db) == 1
    assert await _key_of(live, crashed) is None  # freed from the order with its record

    # Any request may now use the key: it is processed afresh, once.
    retry = await live.checkout(buyer, product["id"], quantity=2, key="crash-1")
    assert retry.status_code == 201, retry.text
    order = retry.json()["order"]
    assert order["id"] != str(crashed)
    assert (order["status"], order["quantity"]) == ("PENDING", 2)
    replay = await live.checkout(buyer, product["id"], quantity=2, key="crash-1")
    assert replay.status_code == 201
    assert replay.content == retry.content
    assert replay.headers["idempotent-replayed"] == "true"
    # The crashed order keeps its reservation until its checkout's time runs out, as before.
    assert await live.stock(product["id"]) == (2, 3)
    assert await release_stale_keys(jobs.db) == 0
    await live.audit_ok()


async def test_a_key_whose_request_may_still_be_running_is_not_released(
    live: Live, jobs: AppContext
) -> None:
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, units=5)
    recent = STALE_IDEMPOTENCY - timedelta(minutes=1)
    order_id = await _crash_after_reserving(live, buyer, product["id"], "slow-1", age=recent)

    assert await release_stale_keys(jobs.db) == 0

    assert await _key_of(live, order_id) == "slow-1"
    retry = await live.checkout(buyer, product["id"], key="slow-1")
    assert_problem(retry, 409, "IDEMPOTENCY_KEY_IN_USE")
    await live.audit_ok()


async def test_a_key_an_order_holds_without_its_record_is_a_409_never_a_500(live: Live) -> None:
    """The state the sweeper left before this fix (record deleted, key still on the order): both
    purchase paths answer a retryable 409 and change nothing."""
    merchant, buyer = await live.register("MERCHANT"), await live.register()
    product = await live.product(merchant, price="5.00", units=5)
    await deposit(live.api, buyer, "50.00")
    stale = STALE_IDEMPOTENCY + timedelta(minutes=1)
    await _crash_after_reserving(live, buyer, product["id"], "orphan-1", age=stale)
    await _forget_record(live, buyer, "orphan-1")

    gateway = await live.checkout(buyer, product["id"], key="orphan-1")
    wallet = await live.api.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers={**buyer.headers, "Idempotency-Key": "orphan-1"},
    )

    for response in (gateway, wallet):
        assert_problem(response, 409, "IDEMPOTENCY_KEY_IN_USE")
    listed = await live.api.get("/orders", headers=buyer.headers)
    assert [o["status"] for o in listed.json()["data"]] == ["PENDING"]  # the crashed one only
    assert await live.stock(product["id"]) == (4, 1)
    assert await live.balance(buyer) == "50.00"
    # Not stored under the key: a retry once the key is free is processed.
    assert await _records(live, buyer, "orphan-1") == 0
    await live.audit_ok()


async def test_other_integrity_errors_of_an_order_insert_are_not_taken_for_a_held_key(
    live: Live,
) -> None:
    buyer = await live.register()

    async def insert(conn: AsyncConnection) -> None:
        await repository.insert_order(
            conn,
            order_id=uuid.uuid4(),
            user_id=uuid.UUID(buyer.id),
            product_id=uuid.uuid4(),  # no such product: a foreign key violation
            merchant_id=uuid.UUID(buyer.id),
            quantity=1,
            unit_price=100,
            currency="USD",
            payment_method=PaymentMethod.GATEWAY,
            status=OrderStatus.PENDING,
            idempotency_key="fk-1",
            now=utcnow(),
        )

    with pytest.raises(IntegrityError):
        await live.db.transaction(with_conn(insert))
