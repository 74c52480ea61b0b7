"""The cap on what one buyer may hold reserved through open gateway orders.

A gateway order reserves its units when it is placed, before anything is paid, for as long as its
checkout lives (CHECKOUT_TTL_SECONDS). Without a cap, a buyer with no money could keep a product
off sale by placing orders and never paying. Open = PENDING or PAYMENT_PROCESSING, over all
products; both caps count the new order too (MAX_OPEN_RESERVATIONS_PER_BUYER,
MAX_RESERVED_UNITS_PER_BUYER).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.config import Settings
from payflow.orders import repository
from payflow.orders.errors import ReservationLimitExceeded


async def check(
    conn: AsyncConnection, settings: Settings, buyer_id: uuid.UUID, quantity: int
) -> None:
    """Refuse a new reservation of `quantity` units that would take the buyer over a cap. Inside
    the reserve transaction, before the product's row lock: the buyer's reservations are
    serialised first, so concurrent orders of one buyer are counted exactly."""
    await repository.serialize_buyer_reservations(conn, buyer_id)
    open_orders, reserved_units = await repository.open_reservations(conn, buyer_id)
    if open_orders + 1 > settings.max_open_reservations_per_buyer:
        raise ReservationLimitExceeded(
            f"You have {open_orders} unpaid gateway orders; at most "
            f"{settings.max_open_reservations_per_buyer} may be open at once. Pay or cancel one."
        )
    if reserved_units + quantity > settings.max_reserved_units_per_buyer:
        raise ReservationLimitExceeded(
            f"Your unpaid gateway orders reserve {reserved_units} units; with {quantity} more "
            f"they would exceed {settings.max_reserved_units_per_buyer}. Pay or cancel one."
        )
