"""Resource ids in paths."""

from __future__ import annotations

import uuid

from payflow.core.errors import NotFound


def parse_path_id(value: str, what: str) -> uuid.UUID:
    """A malformed id names no resource: 404, exactly like an id that does not exist."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"{what} not found") from exc
