"""The cache: Redis when `REDIS_URL` is set, an in-process store otherwise.

A cache is an optimisation, never a source of truth: every Redis failure is logged and answered as a
miss (reads) or remembered (invalidations), so a Redis outage degrades payflow to the database and
never to an error. Invalidations that could not reach Redis are replayed before the cache is read
again, so a value invalidated during an outage is never served after it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("payflow.cache")


@dataclass(frozen=True, slots=True)
class Versioned:
    """A value to store unless the cache already holds the same or a newer version of it."""

    key: str
    version: int
    value: bytes
    ttl_seconds: int


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def set_if_newer(self, key: str, version: int, value: bytes, ttl_seconds: int) -> None:
        """Store `value` unless the cache already holds the same or a newer `version` of it."""
        ...

    async def update(self, versioned: Sequence[Versioned], deleted: Sequence[str] = ()) -> None:
        """Several `set_if_newer`s and deletions at once (one round trip to Redis)."""
        ...

    async def get_versioned(self, key: str) -> tuple[int, bytes] | None: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class MemoryCache:
    """A bounded in-process cache with per-entry expiry (the embedded default)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= time.monotonic():
            self._entries.pop(key, None)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def set_if_newer(self, key: str, version: int, value: bytes, ttl_seconds: int) -> None:
        current = await self.get_versioned(key)
        if current is None or current[0] < version:
            await self.set(key, _versioned(version, value), ttl_seconds)

    async def update(self, versioned: Sequence[Versioned], deleted: Sequence[str] = ()) -> None:
        for item in versioned:
            await self.set_if_newer(item.key, item.version, item.value, item.ttl_seconds)
        await self.delete(*deleted)

    async def get_versioned(self, key: str) -> tuple[int, bytes] | None:
        return _split_versioned(await self.get(key))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    def __init__(self, url: str, prefix: str) -> None:
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=10
        )
        self._prefix = prefix
        self._pending_invalidations: set[str] = set()
        self._update = self._redis.register_script(_UPDATE)

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _replay_invalidations(self) -> bool:
        if not self._pending_invalidations:
            return True
        keys = list(self._pending_invalidations)
        try:
            await self._redis.delete(*keys)
        except (RedisError, OSError):
            return False
        self._pending_invalidations.difference_update(keys)
        return True

    async def get(self, key: str) -> bytes | None:
        if not await self._replay_invalidations():
            return None
        try:
            value = await self._redis.get(self._key(key))
        except (RedisError, OSError) as exc:
            log.warning("cache.unavailable", operation="get", error=type(exc).__name__)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        if not await self._replay_invalidations():
            return
        try:
            await self._redis.set(self._key(key), value, ex=ttl_seconds)
        except (RedisError, OSError) as exc:
            log.warning("cache.unavailable", operation="set", error=type(exc).__name__)

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        full = [self._key(key) for key in keys]
        try:
            await self._redis.delete(*full)
        except (RedisError, OSError) as exc:
            log.warning("cache.unavailable", operation="delete", error=type(exc).__name__)
            self._pending_invalidations.update(full)

    async def set_if_newer(self, key: str, version: int, value: bytes, ttl_seconds: int) -> None:
        await self.update([Versioned(key, version, value, ttl_seconds)])

    async def update(self, versioned: Sequence[Versioned], deleted: Sequence[str] = ()) -> None:
        keys = [self._key(item.key) for item in versioned] + [self._key(key) for key in deleted]
        if not keys:
            return
        if not await self._replay_invalidations():
            self._pending_invalidations.update(keys)
            return
        args: list[int | bytes] = [len(versioned)]
        for item in versioned:
            args += [item.version, _versioned(item.version, item.value), item.ttl_seconds]
        try:
            await self._update(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            log.warning("cache.unavailable", operation="update", error=type(exc).__name__)
            # Some may have been written, some not: make sure none can be served stale.
            self._pending_invalidations.update(keys)

    async def get_versioned(self, key: str) -> tuple[int, bytes] | None:
        return _split_versioned(await self.get(key))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


# Versioned values are "<version>|<payload>"; a writer never replaces a newer version with an older
# one, so a slow reader that loaded an old row cannot overwrite what a later write cached.
# KEYS: the ARGV[1] versioned keys, then the keys to delete; ARGV: their count, then version,
# value and TTL for each versioned key. One script, so one round trip for a whole commit's worth.
_UPDATE = """
local count = tonumber(ARGV[1])
for i = 1, count do
  local version = tonumber(ARGV[3 * i - 1])
  local current = redis.call('GET', KEYS[i])
  local held = current and tonumber(string.match(current, '^(%d+)|'))
  if not held or held < version then
    redis.call('SET', KEYS[i], ARGV[3 * i], 'EX', ARGV[3 * i + 1])
  end
end
for i = count + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 1
"""


def _versioned(version: int, value: bytes) -> bytes:
    return str(version).encode() + b"|" + value


def _split_versioned(raw: bytes | None) -> tuple[int, bytes] | None:
    if raw is None:
        return None
    head, sep, payload = raw.partition(b"|")
    if not sep or not head.isdigit():
        return None
    return int(head), payload


class NullCache:
    """No cache at all: for several processes that share a database but no Redis."""

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        return None

    async def delete(self, *keys: str) -> None:
        return None

    async def set_if_newer(self, key: str, version: int, value: bytes, ttl_seconds: int) -> None:
        return None

    async def update(self, versioned: Sequence[Versioned], deleted: Sequence[str] = ()) -> None:
        return None

    async def get_versioned(self, key: str) -> tuple[int, bytes] | None:
        return None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def create_cache(redis_url: str | None, prefix: str, *, in_process: bool = True) -> Cache:
    if redis_url:
        return RedisCache(redis_url, prefix)
    return MemoryCache() if in_process else NullCache()
