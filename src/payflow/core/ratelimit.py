"""Rate limiting: fixed-window counters, in Redis when `REDIS_URL` is set, in-process otherwise.

With Redis every process counts in the same window (one atomic Lua script: INCR, and PEXPIRE when
the window is new), so a limit holds however many processes serve the API. Redis being down never
switches a limit off: every hit is also counted in an in-process window, and when Redis fails (or
failed less than a second ago) that window decides, so a process keeps the counts it has seen and
goes on refusing. The cost of a fixed window is that a client may spend one window's allowance at
its end and the next one's at the start of the next; the limits here are coarse safety nets, so that
is accepted for one round trip per check.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from payflow.core.errors import DomainError

log = structlog.get_logger("payflow.ratelimit")

_RATE_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$", re.ASCII)
MAX_WINDOW_SECONDS = 86_400
# After a Redis failure, how long the in-process windows decide before Redis is tried again: a
# Redis that times out must not add its timeout to every limited request during an outage.
REDIS_RETRY_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` attempts in a window of `seconds`; written "<count>/<seconds>"."""

    count: int
    seconds: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"a rate limit needs a count of at least 1 and 1..{MAX_WINDOW_SECONDS} seconds"
            )

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE_LIMIT.match(text)
        if match is None:
            raise ValueError(f'expected "<count>/<seconds>", e.g. "10/60", not {text!r}')
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # Whole seconds until the window ends (at least 1); only meaningful when not allowed.
    retry_after: int


class RateLimited(DomainError):
    code = "RATE_LIMITED"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(f"Too many requests; retry after {self.retry_after} seconds")

    @property
    def headers(self) -> dict[str, str]:
        """Rendered on the problem response (core/problems.py)."""
        return {"Retry-After": str(self.retry_after)}


class RateLimiter(Protocol):
    async def hit(self, bucket: str, subject: str, limit: RateLimit) -> Decision:
        """Count one attempt of `subject` (an account, an address, a user) against `limit`."""
        ...

    async def close(self) -> None: ...


def _key(bucket: str, subject: str) -> str:
    # Hashed: keys stay short and Redis never holds email or IP addresses in the clear.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"ratelimit:{bucket}:{digest}"


def _seconds_left(remaining: float) -> int:
    return max(1, math.ceil(remaining))


class MemoryRateLimiter:
    """Windows in this process only: the embedded default, and the fallback when Redis fails."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # key -> (window end, attempts in the window); oldest windows first.
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    async def hit(self, bucket: str, subject: str, limit: RateLimit) -> Decision:
        key = _key(bucket, subject)
        now = self._clock()
        ends_at, count = self._windows.get(key, (0.0, 0))
        if ends_at <= now:
            ends_at, count = now + limit.seconds, 0
            self._windows.pop(key, None)  # a new window goes to the young end
        count += 1
        self._windows[key] = (ends_at, count)
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)
        return Decision(count <= limit.count, _seconds_left(ends_at - now))

    async def close(self) -> None:
        self._windows.clear()


class RedisRateLimiter:
    """Windows shared by every process through Redis, with the in-process ones as fallback."""

    def __init__(
        self, url: str, prefix: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # One attempt, short timeouts: a failing Redis costs one fallback, not retries.
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        self._prefix = prefix
        self._hit = self._redis.register_script(_HIT)
        self._fallback = MemoryRateLimiter(clock=clock)
        self._clock = clock
        self._redis_retry_at = 0.0

    async def hit(self, bucket: str, subject: str, limit: RateLimit) -> Decision:
        local = await self._fallback.hit(bucket, subject, limit)
        if self._clock() < self._redis_retry_at:
            return local
        try:
            count, ttl_ms = await self._hit(
                keys=[self._prefix + _key(bucket, subject)], args=[limit.seconds * 1000]
            )
        except (RedisError, OSError) as exc:
            log.warning("ratelimit.redis_unavailable", bucket=bucket, error=type(exc).__name__)
            self._redis_retry_at = self._clock() + REDIS_RETRY_INTERVAL_SECONDS
            return local
        return Decision(int(count) <= limit.count, _seconds_left(int(ttl_ms) / 1000))

    async def close(self) -> None:
        await self._fallback.close()
        await self._redis.aclose()


# Returns {attempts in the window, milliseconds left}. A key without an expiry (a new window, or
# one written by something else) gets one, so no window can last for ever.
_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


def create_rate_limiter(redis_url: str | None, prefix: str) -> RateLimiter:
    if redis_url:
        return RedisRateLimiter(redis_url, prefix)
    return MemoryRateLimiter()


Network = IPv4Network | IPv6Network


def _parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(text: str, trusted: Sequence[Network]) -> bool:
    address = _parse_ip(text)
    return address is not None and any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """Whom to count a request against: the socket peer, unless the peer is a trusted proxy.

    Behind trusted proxies it is the right-most X-Forwarded-For entry that is not itself a trusted
    proxy: entries further left were written by the client and prove nothing.
    """
    if peer is None:
        return "unknown"
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
