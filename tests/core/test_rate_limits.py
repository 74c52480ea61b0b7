"""Rate limits (docs/security.md): login and register per account and per client address, orders and
withdrawals per user; 429 RATE_LIMITED with Retry-After; shared through Redis, never lost with it.

The suite's `settings` fixture turns rate limits off; every test here turns them on with small
limits in an app of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from pydantic import ValidationError
from redis.asyncio import Redis

from payflow.app import create_app
from payflow.config import Settings
from payflow.core.ratelimit import (
    MemoryRateLimiter,
    RateLimit,
    RateLimiter,
    RedisRateLimiter,
    client_address,
)
from payflow.wiring import AppContext
from tests.live_server import clean_env, run_cli
from tests.redis_server import PrivateRedis, private_redis
from tests.support import (
    Account,
    assert_problem,
    balance,
    create_product,
    deposit,
    ledger,
    register,
    unique_email,
)

LOCAL_PEER = ("127.0.0.1", 50000)
OTHER_PEER = ("10.0.0.5", 1234)
LIMIT_VARIABLES = [
    "RATE_LIMIT_LOGIN_PER_ACCOUNT",
    "RATE_LIMIT_LOGIN_PER_ADDRESS",
    "RATE_LIMIT_REGISTER_PER_ACCOUNT",
    "RATE_LIMIT_REGISTER_PER_ADDRESS",
    "RATE_LIMIT_ORDERS_PER_USER",
    "RATE_LIMIT_WITHDRAWALS_PER_USER",
    "RATE_LIMIT_DEPOSITS_PER_USER",
    "RATE_LIMIT_REFUNDS_PER_USER",
    "RATE_LIMIT_PRODUCT_WRITES_PER_USER",
    "RATE_LIMIT_REFRESH_PER_ADDRESS",
]


@asynccontextmanager
async def limited_app(settings: Settings, **update: Any) -> AsyncIterator[FastAPI]:
    """An app with rate limits on, and `update` applied to its settings."""
    app = create_app(settings.model_copy(update={"rate_limits_enabled": True, **update}))
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client_of(
    app: FastAPI, peer: tuple[str, int] = LOCAL_PEER
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=peer)
    async with httpx.AsyncClient(transport=transport, base_url="http://payflow.test/api/v1") as c:
        yield c


async def _login(
    client: httpx.AsyncClient, email: str, password: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/auth/login", json={"email": email, "password": password}, headers=headers
    )


async def _withdraw(
    client: httpx.AsyncClient, account: Account, amount: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/wallet/withdraw", json={"amount": amount}, headers={**account.headers, **headers}
    )


async def _buy(client: httpx.AsyncClient, buyer: Account, product_id: str) -> httpx.Response:
    return await client.post(
        "/orders",
        json={"productId": product_id, "paymentMethod": "WALLET", "quantity": 1},
        headers=buyer.headers,
    )


def assert_rate_limited(response: httpx.Response, window_seconds: int) -> None:
    assert_problem(response, 429, "RATE_LIMITED")
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= window_seconds


# --- login ---------------------------------------------------------------------------------------


async def test_wrong_passwords_run_into_the_per_account_login_limit(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_login_per_account=RateLimit(3, 60)) as app,
        client_of(app) as client,
    ):
        account = await register(client)
        assert (await _login(client, account.email, "wrong-password-1")).status_code == 401
        # the same account however its email is written
        assert (await _login(client, account.email.upper(), "wrong-password-2")).status_code == 401
        assert (await _login(client, f" {account.email} ", "wrong-password-3")).status_code == 401
        assert_rate_limited(await _login(client, account.email, account.password), 60)


async def test_a_refused_login_runs_no_bcrypt(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        limited_app(settings, rate_limit_login_per_account=RateLimit(2, 60)) as app,
        client_of(app) as client,
    ):
        account = await register(client)
        ctx: AppContext = app.state.context
        verified: list[str] = []
        verify = ctx.passwords.verify

        async def counting_verify(password: str, password_hash: str | None) -> bool:
            verified.append(password)
            return await verify(password, password_hash)

        monkeypatch.setattr(ctx.passwords, "verify", counting_verify)
        for _ in range(4):
            await _login(client, account.email, "wrong-password")
        assert len(verified) == 2


async def test_the_login_limit_of_one_account_leaves_others_alone(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_login_per_account=RateLimit(2, 60)) as app,
        client_of(app) as client,
    ):
        victim = await register(client)
        other = await register(client)
        for _ in range(2):
            await _login(client, victim.email, "wrong-password")
        assert_rate_limited(await _login(client, victim.email, victim.password), 60)
        assert (await _login(client, other.email, other.password)).status_code == 200


async def test_login_is_limited_per_client_address(settings: Settings) -> None:
    async with limited_app(settings, rate_limit_login_per_address=RateLimit(3, 60)) as app:
        async with client_of(app) as client:
            account = await register(client)
            for _ in range(3):  # three different accounts, all from one address
                assert (await _login(client, unique_email(), "wrong-password")).status_code == 401
            assert_rate_limited(await _login(client, account.email, account.password), 60)
        async with client_of(app, OTHER_PEER) as elsewhere:
            assert (await _login(elsewhere, account.email, account.password)).status_code == 200


# --- register ------------------------------------------------------------------------------------


async def test_registration_is_limited_per_client_address(settings: Settings) -> None:
    async with limited_app(settings, rate_limit_register_per_address=RateLimit(2, 3600)) as app:
        async with client_of(app) as client:
            await register(client)
            await register(client)
            email = unique_email()
            response = await client.post(
                "/auth/register", json={"email": email, "password": "correct-horse-battery"}
            )
            assert_rate_limited(response, 3600)
        async with client_of(app, OTHER_PEER) as elsewhere:
            # the refused registration created nothing: the email is still free
            await register(elsewhere, email=email)


async def test_registration_is_limited_per_account(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_register_per_account=RateLimit(2, 3600)) as app,
        client_of(app) as client,
    ):
        email = unique_email()
        body = {"email": email, "password": "correct-horse-battery"}
        assert (await client.post("/auth/register", json=body)).status_code == 201
        again = await client.post("/auth/register", json={**body, "email": email.upper()})
        assert_problem(again, 409, "EMAIL_TAKEN")
        assert_rate_limited(await client.post("/auth/register", json=body), 3600)
        await register(client)  # another email from the same address


# --- orders and withdrawals ----------------------------------------------------------------------


async def test_order_creation_is_limited_per_user(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_orders_per_user=RateLimit(2, 60)) as app,
        client_of(app) as client,
    ):
        merchant = await register(client, role="MERCHANT")
        buyer, other = await register(client), await register(client)
        for account in (buyer, other):
            await deposit(client, account, "10.00")
        product = await create_product(client, merchant, price="1.00", units=10)

        for _ in range(2):
            assert (await _buy(client, buyer, product["id"])).status_code == 201
        assert_rate_limited(await _buy(client, buyer, product["id"]), 60)

        assert await balance(client, buyer) == "8.00"
        orders = await client.get("/orders", headers=buyer.headers)
        assert len(orders.json()["data"]) == 2
        stock = await client.get(f"/products/{product['id']}")
        assert stock.json()["availableUnits"] == 8
        assert (await _buy(client, other, product["id"])).status_code == 201


async def test_withdrawals_are_limited_per_user_and_a_refused_one_moves_no_money(
    settings: Settings,
) -> None:
    async with (
        limited_app(settings, rate_limit_withdrawals_per_user=RateLimit(2, 60)) as app,
        client_of(app) as client,
    ):
        account, other = await register(client), await register(client)
        for each in (account, other):
            await deposit(client, each, "10.00")
        for _ in range(2):
            assert (await _withdraw(client, account, "1.00")).status_code == 201

        refused = await _withdraw(client, account, "1.00", **{"Idempotency-Key": "third"})
        assert_rate_limited(refused, 60)

        assert await balance(client, account) == "8.00"
        assert [row["type"] for row in await ledger(client, account)] == [
            "WITHDRAWAL",
            "WITHDRAWAL",
            "DEPOSIT",
        ]
        assert (await _withdraw(client, other, "1.00")).status_code == 201


async def test_rate_limits_enabled_false_lets_everything_through(settings: Settings) -> None:
    one = RateLimit(1, 60)
    limits = {
        "rate_limit_login_per_account": one,
        "rate_limit_login_per_address": one,
        "rate_limit_register_per_account": one,
        "rate_limit_register_per_address": one,
        "rate_limit_orders_per_user": one,
        "rate_limit_withdrawals_per_user": one,
    }
    async with (
        limited_app(settings, **limits, rate_limits_enabled=False) as app,
        client_of(app) as client,
    ):
        merchant = await register(client, role="MERCHANT")
        buyer = await register(client)
        for _ in range(3):
            assert (await _login(client, buyer.email, "wrong-password")).status_code == 401
        assert (await _login(client, buyer.email, buyer.password)).status_code == 200
        await deposit(client, buyer, "10.00")
        product = await create_product(client, merchant, price="1.00")
        for _ in range(3):
            assert (await _buy(client, buyer, product["id"])).status_code == 201
            assert (await _withdraw(client, buyer, "1.00")).status_code == 201
        assert await balance(client, buyer) == "4.00"


# --- client address ------------------------------------------------------------------------------


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_login_per_address=RateLimit(2, 60)) as app,
        client_of(app) as client,
    ):
        for spoofed in ("203.0.113.1", "203.0.113.2"):
            response = await _login(client, unique_email(), "wrong", **{"X-Forwarded-For": spoofed})
            assert response.status_code == 401
        response = await _login(
            client, unique_email(), "wrong", **{"X-Forwarded-For": "203.0.113.3"}
        )
        assert_rate_limited(response, 60)


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(settings: Settings) -> None:
    async with (
        limited_app(
            settings,
            rate_limit_login_per_address=RateLimit(2, 60),
            trusted_proxies=[ip_network("10.0.0.0/8")],
        ) as app,
        client_of(app, OTHER_PEER) as proxy,
    ):

        async def attempt(forwarded_for: str) -> httpx.Response:
            headers = {"X-Forwarded-For": forwarded_for}
            return await _login(proxy, unique_email(), "wrong-password", **headers)

        assert (await attempt("203.0.113.7")).status_code == 401
        assert (await attempt("203.0.113.7")).status_code == 401
        assert_rate_limited(await attempt("203.0.113.7"), 60)
        # what the client wrote on the left proves nothing; trusted hops on the right are skipped
        assert_rate_limited(await attempt("198.51.100.1, 203.0.113.7"), 60)
        assert_rate_limited(await attempt("203.0.113.7, 10.0.0.9"), 60)
        # another client behind the same proxy has its own count
        assert (await attempt("203.0.113.8")).status_code == 401


TRUSTED = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("192.0.2.1", ["203.0.113.1"], "192.0.2.1"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.1", ["198.51.100.9, 203.0.113.1"], "203.0.113.1"),
        ("10.0.0.1", ["198.51.100.9", "203.0.113.1, 10.0.0.2"], "203.0.113.1"),
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        ("fd00::1", ["2001:db8::1"], "2001:db8::1"),
        ("::ffff:10.0.0.1", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.1", ["not-an-address"], "not-an-address"),
        (None, ["203.0.113.1"], "unknown"),
    ],
)
def test_the_client_address_is_the_right_most_untrusted_hop(
    peer: str | None, forwarded_for: list[str], expected: str
) -> None:
    assert client_address(peer, forwarded_for, TRUSTED) == expected


# --- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


async def test_processes_sharing_one_redis_share_the_counts(settings: Settings) -> None:
    with ExitStack() as stack:
        redis_url = settings.redis_url or stack.enter_context(private_redis()).url
        limits = {"redis_url": redis_url, "rate_limit_login_per_account": RateLimit(3, 60)}
        async with (
            limited_app(settings, **limits) as first,
            limited_app(settings, **limits) as second,
            client_of(first) as one,
            client_of(second) as two,
        ):
            account = await register(one)
            assert (await _login(one, account.email, "wrong-password")).status_code == 401
            assert (await _login(one, account.email, "wrong-password")).status_code == 401
            assert (await _login(two, account.email, "wrong-password")).status_code == 401
            assert_rate_limited(await _login(two, account.email, account.password), 60)
            assert_rate_limited(await _login(one, account.email, account.password), 60)

        redis = Redis.from_url(redis_url)
        try:
            found = await redis.keys(settings.redis_key_prefix + "*")
            keys = [key.decode() if isinstance(key, bytes) else key for key in found]
        finally:
            await redis.aclose()
        limit_keys = [key for key in keys if ":ratelimit:" in key]
        assert limit_keys
        assert all(key.startswith(settings.redis_key_prefix) for key in limit_keys)
        assert not any(account.email in key for key in limit_keys)  # subjects are hashed


async def test_a_redis_outage_keeps_the_limits_enforced(
    settings: Settings, redis_server: PrivateRedis
) -> None:
    async with (
        limited_app(
            settings,
            redis_url=redis_server.url,
            rate_limit_login_per_account=RateLimit(3, 60),
        ) as app,
        client_of(app) as client,
    ):
        account, other = await register(client), await register(client)
        assert (await _login(client, account.email, "wrong-password")).status_code == 401
        assert (await _login(client, account.email, "wrong-password")).status_code == 401

        redis_server.stop()
        # the count so far survives, in this process
        assert (await _login(client, account.email, "wrong-password")).status_code == 401
        assert_rate_limited(await _login(client, account.email, account.password), 60)
        assert (await _login(client, other.email, other.password)).status_code == 200


@pytest.fixture(params=["memory", "redis"])
async def limiter(
    request: pytest.FixtureRequest, redis_server: PrivateRedis
) -> AsyncIterator[RateLimiter]:
    chosen: RateLimiter = (
        MemoryRateLimiter()
        if request.param == "memory"
        else RedisRateLimiter(redis_server.url, prefix="test:")
    )
    yield chosen
    await chosen.close()


async def test_a_limiter_allows_count_attempts_per_window(limiter: RateLimiter) -> None:
    limit = RateLimit(2, 30)
    assert (await limiter.hit("b", "someone", limit)).allowed
    assert (await limiter.hit("b", "someone", limit)).allowed
    refused = await limiter.hit("b", "someone", limit)
    assert not refused.allowed
    assert 1 <= refused.retry_after <= 30
    assert (await limiter.hit("b", "someone else", limit)).allowed
    assert (await limiter.hit("other bucket", "someone", limit)).allowed


async def test_a_window_ends_after_its_seconds() -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    limit = RateLimit(1, 10)
    assert (await limiter.hit("b", "x", limit)).allowed
    now[0] += 4
    refused = await limiter.hit("b", "x", limit)
    assert (refused.allowed, refused.retry_after) == (False, 6)
    now[0] += 6
    assert (await limiter.hit("b", "x", limit)).allowed


async def test_a_failing_redis_falls_back_to_the_process_and_says_so() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", prefix="test:")
    limit = RateLimit(2, 60)
    with structlog.testing.capture_logs() as logs:
        decisions = [await limiter.hit("b", "x", limit) for _ in range(3)]
    await limiter.close()
    assert [decision.allowed for decision in decisions] == [True, True, False]
    assert any(
        entry["event"] == "ratelimit.redis_unavailable" and entry["log_level"] == "warning"
        for entry in logs
    )


# --- deposits, refunds, product writes, refresh ---------------------------------------------------


async def test_deposits_are_limited_per_user_and_a_refused_one_moves_no_money(
    settings: Settings,
) -> None:
    async with (
        limited_app(settings, rate_limit_deposits_per_user=RateLimit(2, 60)) as app,
        client_of(app) as client,
    ):
        account, other = await register(client), await register(client)
        for _ in range(2):
            await deposit(client, account, "1.00")
        refused = await client.post(
            "/wallet/deposit", json={"amount": "1.00"}, headers=account.headers
        )
        assert_rate_limited(refused, 60)
        assert await balance(client, account) == "2.00"
        assert len(await ledger(client, account)) == 2
        await deposit(client, other, "1.00")


async def test_refunds_are_limited_per_merchant(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_refunds_per_user=RateLimit(1, 60)) as app,
        client_of(app) as client,
    ):
        merchant, buyer = await register(client, role="MERCHANT"), await register(client)
        await deposit(client, buyer, "10.00")
        product = await create_product(client, merchant, price="1.00", units=10)
        orders = [(await _buy(client, buyer, product["id"])).json()["id"] for _ in range(2)]
        first = await client.post(f"/orders/{orders[0]}/refund", headers=merchant.headers)
        assert first.status_code == 200, first.text
        second = await client.post(f"/orders/{orders[1]}/refund", headers=merchant.headers)
        assert_rate_limited(second, 60)
        kept = await client.get(f"/orders/{orders[1]}", headers=merchant.headers)
        assert kept.json()["status"] == "COMPLETED"
        assert await balance(client, buyer) == "9.00"


async def test_product_writes_are_limited_per_merchant(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_product_writes_per_user=RateLimit(2, 60)) as app,
        client_of(app) as client,
    ):
        merchant = await register(client, role="MERCHANT")
        product = await create_product(client, merchant, price="1.00", units=1)
        renamed = await client.patch(
            f"/products/{product['id']}", json={"name": "renamed"}, headers=merchant.headers
        )
        assert renamed.status_code == 200, renamed.text
        refused = await client.delete(f"/products/{product['id']}", headers=merchant.headers)
        assert_rate_limited(refused, 60)
        assert (await client.get(f"/products/{product['id']}")).json()["name"] == "renamed"
        other = await register(client, role="MERCHANT")
        await create_product(client, other, price="1.00", units=1)


async def test_refresh_is_limited_per_client_address(settings: Settings) -> None:
    async with (
        limited_app(settings, rate_limit_refresh_per_address=RateLimit(1, 60)) as app,
        client_of(app) as client,
        client_of(app, OTHER_PEER) as elsewhere,
    ):
        account = await register(client)
        first = await client.post("/auth/refresh", json={"refreshToken": account.refresh_token})
        assert first.status_code == 200, first.text
        again = await client.post(
            "/auth/refresh", json={"refreshToken": first.json()["refreshToken"]}
        )
        assert_rate_limited(again, 60)
        # The refused attempt spent nothing: the token still works from another address.
        moved = await elsewhere.post(
            "/auth/refresh", json={"refreshToken": first.json()["refreshToken"]}
        )
        assert moved.status_code == 200, moved.text


# --- configuration -------------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [*LIMIT_VARIABLES, "RATE_LIMITS_ENABLED", "TRUSTED_PROXIES"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_limit_has_a_default() -> None:
    settings = Settings(_env_file=None)
    assert settings.rate_limits_enabled is True
    assert settings.trusted_proxies == []
    assert [str(getattr(settings, name.lower())) for name in LIMIT_VARIABLES] == [
        "10/60",
        "300/60",
        "5/3600",
        "300/3600",
        "120/60",
        "60/60",
        "60/60",
        "60/60",
        "120/60",
        "300/60",
    ]


@pytest.mark.parametrize("name", LIMIT_VARIABLES)
def test_each_limit_is_read_from_its_variable(environment: pytest.MonkeyPatch, name: str) -> None:
    environment.setenv(name, " 7 / 30 ")
    assert getattr(Settings(_env_file=None), name.lower()) == RateLimit(7, 30)


@pytest.mark.parametrize("name", LIMIT_VARIABLES)
@pytest.mark.parametrize("value", ["10", "", "ten/60", "10/60s", "1.5/60", "-1/60", "0/60", "10/0"])
def test_an_invalid_limit_is_refused(
    environment: pytest.MonkeyPatch, name: str, value: str
) -> None:
    environment.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings(_env_file=None)


def test_trusted_proxies_are_addresses_or_networks(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16,fd00::/8")
    assert Settings(_env_file=None).trusted_proxies == [
        ip_network("10.0.0.1/32"),
        ip_network("192.168.0.0/16"),
        ip_network("fd00::/8"),
    ]
    environment.setenv("TRUSTED_PROXIES", "10.0.0.1, proxy.internal")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(_env_file=None)


def test_payflow_refuses_to_start_with_an_invalid_limit(tmp_path: Path) -> None:
    env = clean_env(ENVIRONMENT="test", RATE_LIMIT_ORDERS_PER_USER="lots")
    result = run_cli("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "RATE_LIMIT_ORDERS_PER_USER" in result.stderr


# --- API description -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/auth/login",
        "/auth/register",
        "/auth/refresh",
        "/orders",
        "/wallet/withdraw",
        "/wallet/deposit",
        "/products",
        "/orders/{order_id}/refund",
    ],
)
async def test_the_openapi_document_declares_the_429(client: httpx.AsyncClient, path: str) -> None:
    document = (await client.get("/openapi.json")).json()
    declared = document["paths"]["/api/v1" + path]["post"]["responses"]["429"]
    assert "RATE_LIMITED" in declared["description"]
    assert "Retry-After" in declared["headers"]
