"""The order state machine: the one place that says which status may follow which.

Wallet orders are born COMPLETED (or FAILED, recording why nothing happened). Gateway orders are
born PENDING and move only forward. Every status change in the code base goes through
`repository.transition`, which applies these rules atomically in the database (a conditional
UPDATE from the allowed sources), so a concurrent or repeated event can never move an order back.
"""

from __future__ import annotations

from payflow.orders.models import OrderStatus as S

INITIAL = frozenset({S.PENDING, S.COMPLETED, S.FAILED})
# Where a gateway order holds its reserved units (until paid, failed, cancelled, expired).
RESERVING = frozenset({S.PENDING, S.PAYMENT_PROCESSING})

TRANSITIONS: dict[S, frozenset[S]] = {
    # checkout opened, stock reserved
    S.PENDING: frozenset({S.PAYMENT_PROCESSING, S.COMPLETED, S.FAILED, S.CANCELLED, S.REFUNDED}),
    # checkout completed, an asynchronous payment still settling (reservation kept)
    S.PAYMENT_PROCESSING: frozenset({S.COMPLETED, S.FAILED, S.REFUNDED}),
    # a payment that arrives after the reservation was released takes stock again or is refunded
    S.CANCELLED: frozenset({S.COMPLETED, S.REFUNDED, S.FAILED}),
    S.FAILED: frozenset({S.COMPLETED, S.REFUNDED}),
    S.COMPLETED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
}


def sources_of(target: S) -> frozenset[S]:
    """Every status from which an order may move to `target`."""
    return frozenset(source for source, targets in TRANSITIONS.items() if target in targets)
