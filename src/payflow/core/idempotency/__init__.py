"""Idempotency for every money-moving POST: keys (keys.py), their records (repository.py) and
running a request at most once per key (runner.py)."""

from payflow.core.idempotency.keys import (
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    IdempotencyKeyInUse,
    IdempotencyKeyMismatch,
    IdempotencyScope,
    StoredResponse,
    json_response,
    scope_for,
)
from payflow.core.idempotency.repository import COMPLETED, PROCESSING, RETENTION, ReleasedKey
from payflow.core.idempotency.runner import (
    NOT_AN_OUTCOME,
    Answered,
    IdempotentRequest,
    request_for,
    respond,
)

__all__ = [
    "COMPLETED",
    "NOT_AN_OUTCOME",
    "PROCESSING",
    "REPLAYED_HEADER",
    "RETENTION",
    "Answered",
    "IdempotencyKeyHeader",
    "IdempotencyKeyInUse",
    "IdempotencyKeyMismatch",
    "IdempotencyScope",
    "IdempotentRequest",
    "ReleasedKey",
    "StoredResponse",
    "json_response",
    "request_for",
    "respond",
    "scope_for",
]
