"""Keyset pagination: `?limit=&cursor=` in, `{data, meta: {limit, nextCursor}}` out.

A cursor is opaque to clients: URL-safe base64 of a small JSON list holding the sort key of the
last row served. A cursor that does not decode, or holds a key no database column can hold, is a
400, never a 500: an integer must fit a BIGINT, a time must stay within datetime's range in UTC.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from payflow.core.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Integer sort keys are BIGINT columns; neither database can bind a wider integer.
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (1..100)")]
CursorQuery = Annotated[
    str | None, Query(max_length=512, description="The `nextCursor` of the previous page")
]


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type) -> tuple[Any, ...] | None:
    """The sort key inside a cursor, checked against the expected types, or a 400."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(values, list) or len(values) != len(types):
        raise _bad_cursor()
    if not all(_is_key(v, t) for v, t in zip(values, types, strict=True)):
        raise _bad_cursor()
    return tuple(values)


def _is_key(value: Any, expected: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, expected):
        return False
    return not isinstance(value, int) or _BIGINT_MIN <= value <= _BIGINT_MAX


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid",
        errors=[{"in": "query", "field": "cursor", "message": "not a cursor from this API"}],
    )


class PageMeta(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    limit: int
    next_cursor: str | None = Field(default=None)


class Page(BaseModel, Generic[T]):
    data: list[T]
    meta: PageMeta


def encode_time_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor after a row of a newest-first (created_at, id) listing."""
    return encode_cursor(created_at.isoformat(), str(row_id))


def decode_time_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at in UTC, id) inside a cursor from `encode_time_cursor`, or a 400."""
    key = decode_cursor(cursor, str, str)
    if key is None:
        return None
    try:
        created_at = datetime.fromisoformat(key[0])
        row_id = uuid.UUID(key[1])
    except ValueError as exc:
        raise _bad_cursor() from exc
    if created_at.tzinfo is None:
        raise _bad_cursor()
    try:
        # In UTC, as the rows are stored and compared. A valid time near year 1 or 9999 can have
        # an offset that takes it out of datetime's range: 0001-01-01T00:00+01:00.
        created_at = created_at.astimezone(UTC)
    except OverflowError as exc:
        raise _bad_cursor() from exc
    return created_at, row_id
