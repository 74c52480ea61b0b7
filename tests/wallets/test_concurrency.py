"""Wallet money movements under real concurrency (issue 3, docs/api.md).

Every test starts a real `payflow serve` process on a fresh database of its own (a SQLite file, or a
newly created PostgreSQL database when TEST_DATABASE_URL is set) and drives it over TCP with many
parallel connections. Each ends with the ledger read back through the API (a continuous chain that
ends at the balance) and with `payflow audit` on the same database exiting 0.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.deployments import Deployment
from tests.live_server import KEEPALIVE_EXPIRY
from tests.support import DEFAULT_PASSWORD, unique_email

PARALLEL = 20
MIXED_CLIENTS = 8
MIXED_WALLETS = 3
MIXED_SECONDS = 3.0
REQUEST_TIMEOUT = 60.0
INCREASES = {"DEPOSIT", "EARNING", "REFUND"}
DECREASES = {"WITHDRAWAL", "PAYMENT"}

Json = dict[str, Any]


# --- a real server per test, on the test's own fresh database (tests.deployments) ----------


@pytest.fixture
def base_url(deployment: Deployment) -> Iterator[str]:
    with deployment.server() as url:
        yield url


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{base_url}/api/v1",
        timeout=REQUEST_TIMEOUT,
        limits=httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_EXPIRY
        ),
    )


@pytest.fixture
async def api(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(base_url) as client:
        yield client


# --- API helpers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    headers: dict[str, str]
    wallet_id: str


async def _register(api: httpx.AsyncClient) -> User:
    response = await api.post(
        "/auth/register", json={"email": unique_email("conc"), "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 201, response.text
    headers = {"Authorization": f"Bearer {response.json()['accessToken']}"}
    wallet = await api.get("/wallet", headers=headers)
    assert wallet.status_code == 200, wallet.text
    return User(headers, wallet.json()["id"])


async def _move(
    api: httpx.AsyncClient, user: User, kind: str, amount: str, key: str | None = None
) -> httpx.Response:
    headers = dict(user.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.post(f"/wallet/{kind}", json={"amount": amount}, headers=headers)


async def _balance(api: httpx.AsyncClient, user: User) -> str:
    response = await api.get("/wallet", headers=user.headers)
    assert response.status_code == 200, response.text
    balance: str = response.json()["balance"]
    return balance


async def _ledger(api: httpx.AsyncClient, user: User) -> list[Json]:
    """The wallet's whole history as the API lists it: newest first, every page."""
    rows: list[Json] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if cursor is not None:
            params["cursor"] = cursor
        response = await api.get("/wallet/transactions", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        rows.extend(page["data"])
        cursor = page["meta"]["nextCursor"]
        if cursor is None:
            return rows


def _assert_chain(newest_first: list[Json], balance: str) -> list[Json]:
    """A continuous chain from 0.00 that moves by each row's amount and ends at `balance`.

    Returns the rows oldest first.
    """
    rows = list(reversed(newest_first))
    previous_after = "0.00"
    for position, row in enumerate(rows):
        assert row["status"] == "COMPLETED", row
        assert row["balanceBefore"] == previous_after, (position, row)
        delta = Decimal(row["balanceAfter"]) - Decimal(row["balanceBefore"])
        if row["type"] in INCREASES:
            assert delta == Decimal(row["amount"]), row
        else:
            assert row["type"] in DECREASES, row
            assert -delta == Decimal(row["amount"]), row
        assert Decimal(row["balanceAfter"]) >= 0, row
        previous_after = row["balanceAfter"]
    assert previous_after == balance
    assert len({row["id"] for row in rows}) == len(rows)
    return rows


async def _assert_audit_passes(deployment: Deployment) -> None:
    result = await asyncio.to_thread(deployment.audit)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "all invariants hold" in result.stdout


def _assert_no_server_error(responses: list[httpx.Response]) -> None:
    failures = [(r.status_code, r.text) for r in responses if r.status_code >= 500]
    assert not failures, failures


def _assert_insufficient_funds(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "INSUFFICIENT_FUNDS"
    assert body["status"] == 400


# --- 1. concurrent deposits -----------------------------------------------------------------


async def test_concurrent_deposits_all_count(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    user = await _register(api)

    responses = await asyncio.gather(
        *(_move(api, user, "deposit", "10.00") for _ in range(PARALLEL))
    )

    _assert_no_server_error(responses)
    assert [r.status_code for r in responses] == [201] * PARALLEL, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    for body in bodies:
        assert body["transaction"]["type"] == "DEPOSIT"
        assert body["transaction"]["amount"] == "10.00"
        assert body["wallet"]["balance"] == body["transaction"]["balanceAfter"]
    # Each deposit saw a different balance: none of them overwrote another.
    assert sorted(Decimal(b["transaction"]["balanceAfter"]) for b in bodies) == [
        Decimal(10 * n) for n in range(1, PARALLEL + 1)
    ]

    assert await _balance(api, user) == "200.00"
    rows = _assert_chain(await _ledger(api, user), "200.00")
    assert len(rows) == PARALLEL
    assert {row["type"] for row in rows} == {"DEPOSIT"}
    assert {row["id"] for row in rows} == {b["transaction"]["id"] for b in bodies}
    await _assert_audit_passes(deployment)


# --- 2. concurrent withdrawals --------------------------------------------------------------


async def test_concurrent_withdrawals_never_overdraw(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    user = await _register(api)
    seed = await _move(api, user, "deposit", "100.00")
    assert seed.status_code == 201, seed.text

    responses = await asyncio.gather(
        *(_move(api, user, "withdraw", "50.00") for _ in range(PARALLEL))
    )

    _assert_no_server_error(responses)
    succeeded = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(succeeded) == 2, [r.text for r in responses]
    assert len(refused) == PARALLEL - 2
    for response in refused:
        _assert_insufficient_funds(response)
    assert sorted(r.json()["wallet"]["balance"] for r in succeeded) == ["0.00", "50.00"]

    assert await _balance(api, user) == "0.00"
    rows = _assert_chain(await _ledger(api, user), "0.00")
    assert [row["type"] for row in rows] == ["DEPOSIT", "WITHDRAWAL", "WITHDRAWAL"]
    await _assert_audit_passes(deployment)


# --- 3. mixed traffic from many clients on shared wallets -----------------------------------


@dataclass
class ClientLog:
    """What one client saw: its writes, and every balance it read (with its last write before)."""

    user_index: int
    writes: list[httpx.Response] = field(default_factory=list)
    # (balance read, id of the ledger row of this client's latest 2xx write before it, if any)
    reads: list[tuple[str, str | None]] = field(default_factory=list)


def _random_amount(rng: random.Random, low: int, high: int) -> str:
    cents = rng.randint(low * 100, high * 100)
    return f"{cents // 100}.{cents % 100:02d}"


async def _mixed_client(
    base_url: str,
    user: User,
    log: ClientLog,
    rng: random.Random,
    deadline: float,
    *,
    fresh_connections: bool,
) -> None:
    """Random deposits and withdrawals until `deadline`, each followed by GET /wallet.

    With `fresh_connections`, every request opens a new TCP connection, so that with several
    server processes a client's reads and writes land on whichever process accepts them.
    """
    headers = {**user.headers, "Connection": "close"} if fresh_connections else user.headers
    async with _client(base_url) as api:
        last_write: str | None = None
        while time.monotonic() < deadline:
            if rng.random() < 0.55:
                kind, amount = "deposit", _random_amount(rng, 1, 40)
            else:
                kind, amount = "withdraw", _random_amount(rng, 1, 60)
            response = await api.post(f"/wallet/{kind}", json={"amount": amount}, headers=headers)
            log.writes.append(response)
            if response.status_code == 201:
                last_write = response.json()["transaction"]["id"]
            elif kind == "withdraw":
                _assert_insufficient_funds(response)
            else:
                raise AssertionError(f"deposit failed: {response.status_code} {response.text}")
            for _ in range(2 if rng.random() < 0.3 else 1):  # now and then two reads in a row
                read = await api.get("/wallet", headers=headers)
                assert read.status_code == 200, read.text
                log.reads.append((read.json()["balance"], last_write))


async def _run_mixed_traffic(
    deployment: Deployment, base_url: str, api: httpx.AsyncClient, *, fresh_connections: bool
) -> None:
    users = [await _register(api) for _ in range(MIXED_WALLETS)]
    for user in users:
        seed = await _move(api, user, "deposit", "100.00")
        assert seed.status_code == 201, seed.text
    # Several clients share each wallet: 8 clients on 3 wallets (3, 3 and 2 clients).
    logs = [ClientLog(index % MIXED_WALLETS) for index in range(MIXED_CLIENTS)]
    seed_rng = random.Random()
    deadline = time.monotonic() + MIXED_SECONDS

    async with asyncio.TaskGroup() as clients:  # a failing client stops the others
        for log in logs:
            clients.create_task(
                _mixed_client(
                    base_url,
                    users[log.user_index],
                    log,
                    random.Random(seed_rng.random()),
                    deadline,
                    fresh_connections=fresh_connections,
                )
            )

    for index, user in enumerate(users):
        mine = [log for log in logs if log.user_index == index]
        newest_first = await _ledger(api, user)
        rows = _assert_chain(newest_first, newest_first[0]["balanceAfter"])
        position = {row["id"]: n for n, row in enumerate(rows)}
        # The ledger holds exactly the seed and every write a client was told succeeded.
        written = [w.json() for log in mine for w in log.writes if w.status_code == 201]
        assert len(rows) == 1 + len(written)
        for body in written:
            row = rows[position[body["transaction"]["id"]]]
            assert row["balanceAfter"] == body["transaction"]["balanceAfter"]
            assert body["wallet"]["balance"] == row["balanceAfter"]
        # Every balance read is a point of the chain (0.00 is the point before the first row),
        # and after its own write a client reads that write or a later one (read-your-writes).
        points: dict[str, list[int]] = {"0.00": [-1]}
        for n, row in enumerate(rows):
            points.setdefault(row["balanceAfter"], []).append(n)
        reads = [read for log in mine for read in log.reads]
        assert len(reads) >= len(mine)
        stale = []
        for read, last_write in reads:
            assert read in points, f"balance {read} read is no point of the ledger chain"
            if last_write is not None and max(points[read]) < position[last_write]:
                stale.append((read, rows[position[last_write]]["balanceAfter"]))
        assert not stale, (
            f"read-your-writes broken {len(stale)} times of {len(reads)} reads on wallet"
            f" {user.wallet_id}: (balance read, balance after the client's own last write):"
            f" {stale[:5]}"
        )
        assert await _balance(api, user) == rows[-1]["balanceAfter"]
    await _assert_audit_passes(deployment)


async def test_mixed_traffic_on_shared_wallets_keeps_every_invariant(
    deployment: Deployment, base_url: str, api: httpx.AsyncClient
) -> None:
    await _run_mixed_traffic(deployment, base_url, api, fresh_connections=False)


async def test_mixed_traffic_through_two_server_processes(deployment: Deployment) -> None:
    """The same traffic through `payflow serve --workers 2`, each request on a new connection.

    N processes stay correct, a client reads its own writes, and a concurrency test runs through
    two server processes.
    """
    # Several workers cannot share the built-in sandbox; point them at a (here unused) Stripe.
    workers = deployment.with_env(
        STRIPE_SECRET_KEY="sk_test_unused", STRIPE_API_BASE="http://127.0.0.1:9"
    )
    with workers.server(workers=2) as base_url:
        async with _client(base_url) as api:
            await _run_mixed_traffic(deployment, base_url, api, fresh_connections=True)


# --- 4. idempotency under concurrency and across restarts ----------------------------------


async def test_one_key_sent_in_parallel_moves_money_once(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    user = await _register(api)
    key = f"parallel-{uuid.uuid4()}"

    responses = await asyncio.gather(
        *(_move(api, user, "deposit", "25.00", key) for _ in range(PARALLEL))
    )

    _assert_no_server_error(responses)
    assert [r.status_code for r in responses] == [201] * PARALLEL, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # byte-identical bodies
    processed = [r for r in responses if r.headers.get("idempotent-replayed") != "true"]
    assert len(processed) == 1
    assert all(r.headers.get("idempotent-replayed") in (None, "true") for r in responses)

    later = await _move(api, user, "deposit", "25.00", key)
    assert later.status_code == 201
    assert later.headers["idempotent-replayed"] == "true"
    assert later.content == responses[0].content

    mismatch = await _move(api, user, "deposit", "26.00", key)
    assert mismatch.status_code == 422, mismatch.text
    assert mismatch.headers["content-type"].startswith("application/problem+json")
    assert mismatch.json()["code"] == "IDEMPOTENCY_KEY_MISMATCH"

    # The same key is a new request for another user.
    other = await _register(api)
    theirs = await _move(api, other, "deposit", "25.00", key)
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers

    assert await _balance(api, user) == "25.00"
    rows = _assert_chain(await _ledger(api, user), "25.00")
    assert [row["id"] for row in rows] == [responses[0].json()["transaction"]["id"]]
    _assert_chain(await _ledger(api, other), "25.00")
    await _assert_audit_passes(deployment)


async def test_a_stored_business_failure_is_replayed_after_funding(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    user = await _register(api)
    key = f"failing-{uuid.uuid4()}"

    # The first attempts race each other: one outcome is stored, and every one of them gets it.
    attempts = await asyncio.gather(
        *(_move(api, user, "withdraw", "50.00", key) for _ in range(PARALLEL))
    )
    for attempt in attempts:
        _assert_insufficient_funds(attempt)
    failed = attempts[0]
    assert len({attempt.content for attempt in attempts}) == 1
    funded = await _move(api, user, "deposit", "100.00")
    assert funded.status_code == 201, funded.text

    replays = await asyncio.gather(
        *(_move(api, user, "withdraw", "50.00", key) for _ in range(PARALLEL))
    )
    for replay in replays:
        _assert_insufficient_funds(replay)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == failed.content

    assert await _balance(api, user) == "100.00"
    rows = _assert_chain(await _ledger(api, user), "100.00")
    assert [row["type"] for row in rows] == ["DEPOSIT"]
    await _assert_audit_passes(deployment)


async def test_idempotency_survives_a_server_restart(deployment: Deployment) -> None:
    key = f"restart-{uuid.uuid4()}"
    with deployment.server() as first_url:
        async with _client(first_url) as api:
            user = await _register(api)
            first = await _move(api, user, "deposit", "12.34", key)
            assert first.status_code == 201, first.text
            refused_key = f"refused-{uuid.uuid4()}"
            refused = await _move(api, user, "withdraw", "99.99", refused_key)
            _assert_insufficient_funds(refused)

    with deployment.server() as second_url:
        async with _client(second_url) as api:
            replays = await asyncio.gather(
                *(_move(api, user, "deposit", "12.34", key) for _ in range(PARALLEL // 2))
            )
            for replay in replays:
                assert replay.status_code == 201, replay.text
                assert replay.headers["idempotent-replayed"] == "true"
                assert replay.content == first.content
            refused_again = await _move(api, user, "withdraw", "99.99", refused_key)
            assert refused_again.headers["idempotent-replayed"] == "true"
            assert refused_again.content == refused.content

            assert await _balance(api, user) == "12.34"
            rows = _assert_chain(await _ledger(api, user), "12.34")
            assert [row["id"] for row in rows] == [first.json()["transaction"]["id"]]
    await _assert_audit_passes(deployment)
