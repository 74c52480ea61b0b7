"""Orders on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from payflow.core.money import format_minor
from payflow.core.schemas import RequestModel, ResponseModel, StorableText
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import Order


class CreateOrderRequest(RequestModel):
    product_id: uuid.UUID
    payment_method: PaymentMethod
    # Strict: true, 1.0 and "1" are not quantities.
    quantity: int = Field(default=1, ge=1, le=100, strict=True)
    idempotency_key: str | None = Field(
        default=None,
        description="Alias of the Idempotency-Key header",
        max_length=255,
        # Documented only: checked like the header, by the idempotency module.
        json_schema_extra={"pattern": r"^[\x20-\x7e]{1,255}$"},
    )


class RefundRequest(RequestModel):
    reason: StorableText | None = Field(default=None, max_length=500)


class OrderOut(ResponseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    product_id: uuid.UUID
    merchant_id: uuid.UUID
    quantity: int
    unit_price: str
    amount: str
    currency: str
    payment_method: PaymentMethod
    status: OrderStatus
    failure_reason: str | None
    stripe_session_id: str | None = Field(
        description="The Checkout session id; shown to the order's buyer only (null for the merchant)"
    )
    reservation_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    failed_at: datetime | None

    @classmethod
    def of(cls, order: Order, viewer_id: uuid.UUID) -> OrderOut:
        """The order as `viewer_id` may see it. The Checkout session id goes to the buyer only:
        it is the buyer's to pay with, and nobody else has a use for it."""
        return cls(
            id=order.id,
            user_id=order.user_id,
            product_id=order.product_id,
            merchant_id=order.merchant_id,
            quantity=order.quantity,
            unit_price=format_minor(order.unit_price, order.currency),
            amount=format_minor(order.amount, order.currency),
            currency=order.currency,
            payment_method=order.payment_method,
            status=order.status,
            failure_reason=order.failure_reason,
            stripe_session_id=order.stripe_session_id if viewer_id == order.user_id else None,
            reservation_expires_at=order.reservation_expires_at,
            created_at=order.created_at,
            updated_at=order.updated_at,
            completed_at=order.completed_at,
            failed_at=order.failed_at,
        )


class CheckoutOut(ResponseModel):
    """A gateway order, PENDING until its Checkout session is paid."""

    order: OrderOut
    checkout_url: str | None
    session_id: str | None
