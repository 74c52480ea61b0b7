"""Fault tests (issue 7): the world misbehaves under load, and no money is lost or invented.

Each test drives a real `payflow serve` with idempotent requests while something fails — the
server is killed with SIGKILL, its database connections are terminated, Redis stops — then
replays every request with its key and ends with `payflow audit` exit 0 and Σ balances conserved.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from tests.db_helpers import postgres_only
from tests.deployments import TEST_DATABASE_URL, Deployment, plain_pg_url
from tests.live_server import CLIENT_LIMITS
from tests.redis_server import private_redis
from tests.support import DEFAULT_PASSWORD, unique_email

BUYERS = 12
FUNDS = "1000.00"
PRICE = "7.00"
STOCK = 100_000


@dataclass
class Market:
    merchant: dict[str, str]
    buyers: list[dict[str, str]]
    product_id: str


@dataclass
class Sent:
    """Every request the load sent, by idempotency key, and what it got back (if anything)."""

    requests: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    acknowledged: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    transport_errors: int = 0


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{base_url}/api/v1", timeout=30.0, limits=CLIENT_LIMITS)


async def _account(api: httpx.AsyncClient, role: str) -> dict[str, str]:
    response = await api.post(
        "/auth/register",
        json={"email": unique_email(role.lower()), "password": DEFAULT_PASSWORD, "role": role},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return {"id": body["user"]["id"], "token": body["accessToken"]}


def _auth(account: dict[str, str], key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {account['token']}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


async def _market(api: httpx.AsyncClient) -> Market:
    merchant = await _account(api, "MERCHANT")
    buyers = list(await asyncio.gather(*(_account(api, "USER") for _ in range(BUYERS))))
    for buyer in buyers:
        funded = await api.post("/wallet/deposit", json={"amount": FUNDS}, headers=_auth(buyer))
        assert funded.status_code == 201
    product = await api.post(
        "/products",
        json={"name": "fault-tolerant e-book", "price": PRICE, "availableUnits": STOCK},
        headers=_auth(merchant),
    )
    assert product.status_code == 201, product.text
    return Market(merchant, buyers, product.json()["id"])


async def _load(
    base_url: str, market: Market, sent: Sent, stop: asyncio.Event, *, with_reads: bool = False
) -> None:
    """Each buyer, in a loop until `stop`: a keyed purchase, a keyed deposit, (a balance read)."""

    async def one_buyer(buyer: dict[str, str]) -> None:
        async with _client(base_url) as api:
            n = 0
            while not stop.is_set():
                n += 1
                for path, body in (
                    ("/orders", {"productId": market.product_id, "paymentMethod": "WALLET"}),
                    ("/wallet/deposit", {"amount": "1.00"}),
                ):
                    key = f"{buyer['id'][:8]}-{path.strip('/').replace('/', '-')}-{n}"
                    sent.requests[key] = (buyer["token"], path, body)
                    try:
                        response = await api.post(path, json=body, headers=_auth(buyer, key))
                    except httpx.TransportError:
                        sent.transport_errors += 1
                        continue
                    sent.statuses.append(response.status_code)
                    if response.status_code < 300:
                        sent.acknowledged[key] = (response.status_code, response.content)
                if with_reads:
                    try:
                        read = await api.get("/wallet", headers=_auth(buyer))
                        sent.statuses.append(read.status_code)
                    except httpx.TransportError:
                        sent.transport_errors += 1

    await asyncio.gather(*(one_buyer(buyer) for buyer in market.buyers))


async def _replay_all(base_url: str, sent: Sent) -> None:
    """Every request again with its key: acknowledged ones replay byte for byte; the others now
    take effect exactly once (or replay what had committed before the fault)."""
    async with _client(base_url) as api:
        semaphore = asyncio.Semaphore(16)

        async def replay(key: str) -> None:
            token, path, body = sent.requests[key]
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
            async with semaphore:
                # A keep-alive connection the server closed while it sat idle in the client's
                # pool (uvicorn closes them after 5 s) fails on reuse: the client just sends the
                # request again with the same key, which is what the key is for.
                for attempt in range(3):
                    try:
                        response = await api.post(path, json=body, headers=headers)
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
            assert response.status_code == 201, (key, response.status_code, response.text)
            if key in sent.acknowledged:
                assert response.content == sent.acknowledged[key][1], key
                assert response.headers.get("idempotent-replayed") == "true"

        await asyncio.gather(*(replay(key) for key in sent.requests))


async def _check_money(deployment: Deployment, base_url: str, market: Market, sent: Sent) -> None:
    """One effect per key, nothing invented or lost, and the audit holds."""
    purchases = sum(1 for key in sent.requests if "-orders-" in key)
    deposits = len(sent.requests) - purchases
    orders = await asyncio.to_thread(
        deployment.query, "SELECT idempotency_key FROM orders WHERE status = 'COMPLETED'"
    )
    keys = [row[0] for row in orders]
    assert len(keys) == len(set(keys)) == purchases
    async with _client(base_url) as api:
        product = (await api.get(f"/products/{market.product_id}")).json()
        assert product["availableUnits"] == STOCK - purchases
        balances = [
            Decimal((await api.get("/wallet", headers=_auth(account))).json()["balance"])
            for account in [market.merchant, *market.buyers]
        ]
    total_in = Decimal(FUNDS) * BUYERS + Decimal("1.00") * deposits
    assert sum(balances) == total_in
    assert balances[0] == Decimal(PRICE) * purchases
    audit = await asyncio.to_thread(deployment.audit)
    assert audit.returncode == 0, audit.stdout + audit.stderr


async def _run_with_fault(
    deployment: Deployment,
    base_url: str,
    market: Market,
    fault: Callable[[], Awaitable[None]],
    *,
    seconds: float = 2.0,
    with_reads: bool = False,
) -> Sent:
    sent = Sent()
    stop = asyncio.Event()
    load = asyncio.create_task(_load(base_url, market, sent, stop, with_reads=with_reads))
    await asyncio.sleep(seconds / 2)
    await fault()
    await asyncio.sleep(seconds / 2)
    stop.set()
    await load
    return sent


async def test_kill_9_under_load_loses_no_acknowledged_write(deployment: Deployment) -> None:
    with deployment.server() as base_url:
        async with _client(base_url) as api:
            market = await _market(api)

        async def kill() -> None:
            os.killpg(base_url.pid, signal.SIGKILL)

        sent = await _run_with_fault(deployment, base_url, market, kill)
    assert sent.transport_errors > 0  # the kill really cut requests off
    assert all(status < 500 for status in sent.statuses)
    with deployment.server() as base_url:  # a new process on the same database
        await _replay_all(base_url, sent)
        await _check_money(deployment, base_url, market, sent)


async def _terminate_backends(deployment: Deployment) -> None:
    database = deployment.database_url.rsplit("/", 1)[1]
    admin = plain_pg_url(TEST_DATABASE_URL or "")
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        for _ in range(5):
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'payflow' AND pid <> pg_backend_pid()",
                database,
            )
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


# SQLite has no server connections to terminate: this fault exists on PostgreSQL only.
@postgres_only("deployment")
async def test_terminated_database_connections_give_503_or_success_never_500(
    deployment: Deployment,
) -> None:
    with deployment.server() as base_url:
        async with _client(base_url) as api:
            market = await _market(api)
        sent = await _run_with_fault(
            deployment, base_url, market, lambda: _terminate_backends(deployment), seconds=3.0
        )
        assert 500 not in sent.statuses
        assert all(status in (200, 201, 503) for status in sent.statuses), set(sent.statuses)
        # the pool recovered by itself: plain requests succeed again
        async with _client(base_url) as api:
            response = await api.get("/wallet", headers=_auth(market.buyers[0]))
            assert response.status_code == 200
        await _replay_all(base_url, sent)
        await _check_money(deployment, base_url, market, sent)


async def test_redis_stopped_under_load_answers_from_the_database(
    deployment: Deployment,
) -> None:
    with private_redis() as redis:
        with_redis = deployment.with_env(
            REDIS_URL=redis.url, REDIS_KEY_PREFIX=f"fault:{uuid.uuid4().hex}:"
        )
        with with_redis.server() as base_url:
            async with _client(base_url) as api:
                market = await _market(api)

            async def stop_redis() -> None:
                await asyncio.to_thread(redis.stop)

            started = time.monotonic()
            sent = await _run_with_fault(
                with_redis, base_url, market, stop_redis, seconds=3.0, with_reads=True
            )
            assert time.monotonic() - started < 120
            assert sent.transport_errors == 0
            assert all(status in (200, 201) for status in sent.statuses), set(sent.statuses)
            await _replay_all(base_url, sent)
            await _check_money(with_redis, base_url, market, sent)
