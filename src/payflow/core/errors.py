"""Domain errors: what went wrong, as a stable machine code. They know nothing of HTTP.

The HTTP layer (core/problems.py) maps each code to a status and renders RFC 9457 problem details.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: Sequence[dict[str, Any]] = ()) -> None:
        self.detail = detail or self.title
        self.errors = list(errors)
        super().__init__(self.detail)


class ValidationFailed(DomainError):
    code = "VALIDATION_ERROR"
    title = "The request is not valid"


class Unauthorized(DomainError):
    code = "UNAUTHORIZED"
    title = "Authentication is required"


class Forbidden(DomainError):
    code = "FORBIDDEN"
    title = "You may not do this"


class NotFound(DomainError):
    code = "NOT_FOUND"
    title = "Not found"


class Conflict(DomainError):
    code = "CONFLICT"
    title = "Conflict"


class ServiceUnavailable(DomainError):
    code = "SERVICE_UNAVAILABLE"
    title = "A required service is unavailable"
