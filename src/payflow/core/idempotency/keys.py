"""Idempotency keys: what a key is, what it guards (its scope), and the responses stored under it.

A keyed request is identified by (user, endpoint, key); its `request_hash` fingerprints what it
asked for, so the same key sent with a different request is refused instead of replayed.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Header
from starlette.responses import Response

from payflow.core.errors import DomainError, ValidationFailed
from payflow.core.problems import PROBLEM_MEDIA_TYPE, STATUS_BY_CODE, problem_body

REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_PATTERN = re.compile(r"^[\x20-\x7e]{1,255}$")


class IdempotencyKeyMismatch(DomainError):
    code = "IDEMPOTENCY_KEY_MISMATCH"
    title = "This idempotency key was used for a different request"


class IdempotencyKeyInUse(DomainError):
    code = "IDEMPOTENCY_KEY_IN_USE"
    title = "A request with this idempotency key is still being processed"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    media_type: str = "application/json"
    replayed: bool = False

    def to_http(self) -> Response:
        headers = {REPLAYED_HEADER: "true"} if self.replayed else None
        return Response(
            self.body, status_code=self.status, media_type=self.media_type, headers=headers
        )


def json_response(status: int, payload: Any) -> StoredResponse:
    """A response whose body is rendered once, here, and stored as exactly these bytes."""
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json", by_alias=True)
    return StoredResponse(status=status, body=orjson.dumps(payload))


def problem_response(error: DomainError, instance: str, request_id: str | None) -> StoredResponse:
    body = problem_body(
        error.code,
        error.detail,
        title=error.title,
        instance=instance,
        request_id=request_id,
        errors=error.errors,
    )
    return StoredResponse(
        STATUS_BY_CODE.get(error.code, 500), orjson.dumps(body), PROBLEM_MEDIA_TYPE
    )


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    user_id: uuid.UUID
    endpoint: str
    key: str
    request_hash: str


def request_fingerprint(endpoint: str, payload: Any) -> str:
    """A stable hash of what the request asks for (its validated, canonical form)."""
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json", by_alias=True)
    canonical = orjson.dumps([endpoint, payload], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY_PATTERN.fullmatch(key):
        raise ValidationFailed(
            "The Idempotency-Key header must be 1..255 printable ASCII characters",
            errors=[{"in": "header", "field": "Idempotency-Key", "message": "invalid key"}],
        )
    return key


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1..255 printable ASCII characters; replays return the first response",
        # Documented only: validate_key() checks it, with its own message, after authentication.
        json_schema_extra={"pattern": _KEY_PATTERN.pattern},
    ),
]


def scope_for(
    user_id: uuid.UUID, endpoint: str, key: str | None, payload: Any
) -> IdempotencyScope | None:
    valid = validate_key(key)
    if valid is None:
        return None
    return IdempotencyScope(user_id, endpoint, valid, request_fingerprint(endpoint, payload))
