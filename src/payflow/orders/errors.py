"""Order errors."""

from __future__ import annotations

from payflow.core.errors import DomainError


class OrderStateConflict(DomainError):
    code = "ORDER_STATE_CONFLICT"
    title = "The order's state does not allow this"
