"""Order errors."""

from __future__ import annotations

from payflow.core.errors import DomainError
from payflow.core.idempotency import IdempotencyKeyInUse


class OrderStateConflict(DomainError):
    code = "ORDER_STATE_CONFLICT"
    title = "The order's state does not allow this"


class ReservationLimitExceeded(DomainError):
    """The buyer's open gateway orders would hold more than the configured caps allow."""

    code = "RESERVATION_LIMIT"
    title = "Too many open reservations"


class IdempotencyKeyHeldByOrder(IdempotencyKeyInUse):
    """An earlier order still holds this key although its idempotency record is gone.

    Not an outcome of this request (like its parent, it is never stored under the key): once the
    key is released from that order, the same request can simply be retried."""
