"""The cache (docs/architecture.md, Caching): versioned writes, and Redis outages that degrade to the database."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from payflow.app import create_app
from payflow.config import Settings
from payflow.core.cache import Cache, MemoryCache, RedisCache, Versioned
from tests.redis_server import PrivateRedis, private_redis
from tests.support import register


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest, redis_server: PrivateRedis) -> Cache:
    if request.param == "memory":
        return MemoryCache()
    return RedisCache(redis_server.url, prefix="test:")


async def test_an_older_version_never_replaces_a_newer_one(cache: Cache) -> None:
    await cache.set_if_newer("k", 5, b"five", 60)
    await cache.set_if_newer("k", 4, b"four", 60)
    assert await cache.get_versioned("k") == (5, b"five")
    await cache.set_if_newer("k", 5, b"five again", 60)
    assert await cache.get_versioned("k") == (5, b"five")
    await cache.set_if_newer("k", 6, b"six", 60)
    assert await cache.get_versioned("k") == (6, b"six")
    await cache.delete("k")
    assert await cache.get_versioned("k") is None
    await cache.close()


async def test_one_update_applies_every_versioned_write_and_deletion(cache: Cache) -> None:
    await cache.set_if_newer("a", 5, b"a5", 60)
    await cache.set_if_newer("b", 1, b"b1", 60)
    await cache.set("gen", b"g", 60)

    await cache.update(
        [
            Versioned("a", 4, b"a4", 60),  # older than what is held: refused
            Versioned("b", 2, b"b2", 60),  # newer: written
            Versioned("c", 1, b"c1", 60),  # absent: written
        ],
        ["gen", "never-there"],
    )

    assert await cache.get_versioned("a") == (5, b"a5")
    assert await cache.get_versioned("b") == (2, b"b2")
    assert await cache.get_versioned("c") == (1, b"c1")
    assert await cache.get("gen") is None
    await cache.update([])  # nothing to do is not an error
    await cache.close()


async def test_entries_expire(cache: Cache) -> None:
    await cache.set("gone", b"x", 1)
    assert await cache.get("gone") == b"x"
    if isinstance(cache, MemoryCache):
        cache._entries["gone"] = (0.0, b"x")  # expiry is clock-based; move it into the past
        assert await cache.get("gone") is None
    await cache.close()


async def test_an_unreachable_redis_is_a_miss_not_an_error(redis_server: PrivateRedis) -> None:
    cache = RedisCache(redis_server.url, prefix="test:")
    await cache.set("k", b"v", 60)
    redis_server.stop()
    assert await cache.get("k") is None
    await cache.set("k", b"w", 60)
    await cache.delete("k")
    assert await cache.ping() is False
    await cache.close()


async def test_invalidations_missed_during_an_outage_are_replayed(
    redis_server: PrivateRedis,
) -> None:
    cache = RedisCache(redis_server.url, prefix="test:")
    await cache.set("k", b"old", 60)
    original = cache._redis.connection_pool.connection_kwargs["port"]
    cache._redis.connection_pool.connection_kwargs["port"] = 1  # Redis unreachable
    await cache._redis.connection_pool.disconnect()
    await cache.delete("k")  # cannot reach Redis: remembered
    cache._redis.connection_pool.connection_kwargs["port"] = original
    await cache._redis.connection_pool.disconnect()
    assert await cache.get("k") is None  # the missed delete ran before this read
    await cache.close()


async def test_wallets_stay_correct_while_redis_is_down(
    settings: Settings, redis_server: PrivateRedis
) -> None:
    app = create_app(settings.model_copy(update={"redis_url": redis_server.url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            account = await register(client)
            headers = {**account.headers, "Idempotency-Key": "during-outage"}
            await client.post("/wallet/deposit", json={"amount": "10.00"}, headers=account.headers)
            assert (await client.get("/wallet", headers=account.headers)).json()[
                "balance"
            ] == "10.00"

            redis_server.stop()
            first = await client.post("/wallet/deposit", json={"amount": "5.00"}, headers=headers)
            assert first.status_code == 201
            assert (await client.get("/wallet", headers=account.headers)).json()[
                "balance"
            ] == "15.00"
            replay = await client.post("/wallet/deposit", json={"amount": "5.00"}, headers=headers)
            assert replay.content == first.content
            assert (await client.get("/health/ready")).status_code == 503

            redis_server.start()
            assert (await client.get("/wallet", headers=account.headers)).json()[
                "balance"
            ] == "15.00"
            history = await client.get("/wallet/transactions", headers=account.headers)
            assert len(history.json()["data"]) == 2
