"""The order as the domain sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payflow.orders.models import OrderStatus, PaymentMethod

# The idempotency endpoint of POST /orders: the one scope whose keys orders also hold
# (orders.idempotency_key, unique per buyer), so its records and those keys are released together.
CREATE_ORDER_ENDPOINT = "orders.create"


@dataclass(frozen=True, slots=True)
class Order:
    id: uuid.UUID
    user_id: uuid.UUID
    product_id: uuid.UUID
    merchant_id: uuid.UUID
    quantity: int
    unit_price: int
    amount: int
    currency: str
    payment_method: PaymentMethod
    status: OrderStatus
    stripe_session_id: str | None
    stripe_payment_intent_id: str | None
    reservation_expires_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Checkout:
    """A gateway order and the hosted checkout that can pay for it."""

    order: Order
    url: str | None
    session_id: str | None
