"""Stripe's idempotency for POST requests, keyed by (API key, Idempotency-Key).

Same key and same request (method, path and parameters, in any order): the first response is
replayed with `Idempotent-Replayed: true`. Same key, different request: 400 idempotency_error.
Same key while the first request is still running: 409 idempotency_error, which the SDK retries.
Like Stripe, a response is kept only when the request got past validation; a request that failed
validation or hit a server error leaves the key free to be used again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from payflow.sandbox.errors import StripeApiError

KEY_TTL_SECONDS = 24 * 3600
PRUNE_EVERY_SECONDS = 60.0


@dataclass(slots=True)
class StoredResponse:
    fingerprint: str
    status: int | None = None  # None while the first request is still running
    body: bytes = b""
    stored_at: float = field(default_factory=time.monotonic)


def fingerprint(method: str, path: str, body: bytes) -> str:
    pairs = sorted(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    canonical = "\n".join([method.upper(), path, *(f"{k}={v}" for k, v in pairs)])
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], StoredResponse] = {}
        self._pruned_at = time.monotonic()

    def begin(self, api_key: str, key: str, request_fingerprint: str) -> StoredResponse | None:
        """The stored response to replay, or None after reserving the key for this request."""
        self._forget_old()
        entry = self._entries.get((api_key, key))
        if entry is None:
            self._entries[(api_key, key)] = StoredResponse(request_fingerprint)
            return None
        if entry.fingerprint != request_fingerprint:
            raise StripeApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type_="idempotency_error",
            )
        if entry.status is None:
            raise StripeApiError(
                409,
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still "
                "going through): " + key + ". Please try again later.",
                type_="idempotency_error",
                code="idempotency_key_in_use",
            )
        return entry

    def finish(self, api_key: str, key: str, status: int, body: bytes) -> None:
        entry = self._entries[(api_key, key)]
        entry.status = status
        entry.body = body

    def release(self, api_key: str, key: str) -> None:
        self._entries.pop((api_key, key), None)

    def _forget_old(self) -> None:
        # A full scan, so at most once a minute: load tests send many thousands of keys.
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        cutoff = now - KEY_TTL_SECONDS
        for scope in [s for s, e in self._entries.items() if e.stored_at < cutoff]:
            del self._entries[scope]
