"""The sandbox's Stripe objects and their JSON form, field for field as Stripe names them.

Only fields that the SDK's classes declare are rendered (a test checks this against the SDK's
annotations), so code written against the sandbox reads real Stripe objects the same way.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import stripe

SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'z')}"


class SessionStatus(StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class PaymentStatus(StrEnum):
    PAID = "paid"
    UNPAID = "unpaid"


class IntentStatus(StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class LineItem:
    name: str
    currency: str
    unit_amount: int
    quantity: int

    @property
    def amount(self) -> int:
        return self.unit_amount * self.quantity


@dataclass(slots=True)
class CheckoutSession:
    id: str
    created: int
    expires_at: int
    currency: str
    line_items: list[LineItem]
    success_url: str | None
    cancel_url: str | None
    client_reference_id: str | None
    customer_email: str | None
    metadata: dict[str, str]
    payment_intent_metadata: dict[str, str]
    status: SessionStatus = SessionStatus.OPEN
    payment_status: PaymentStatus = PaymentStatus.UNPAID
    payment_intent: str | None = None

    @property
    def amount_total(self) -> int:
        return sum(item.amount for item in self.line_items)

    def hosted_url(self, public_base: str) -> str:
        return f"{public_base}/checkout/{self.id}"

    def success_redirect(self) -> str | None:
        # Stripe fills the template variable in success_url only; cancel_url is used as given.
        if self.success_url is None:
            return None
        return self.success_url.replace(SESSION_ID_PLACEHOLDER, self.id)

    def to_stripe(self, public_base: str, intent: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checkout.session object; `intent` given means payment_intent was expanded."""
        return {
            "id": self.id,
            "object": "checkout.session",
            "amount_subtotal": self.amount_total,
            "amount_total": self.amount_total,
            "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id,
            "created": self.created,
            "currency": self.currency,
            "customer": None,
            "customer_email": self.customer_email,
            "expires_at": self.expires_at,
            "invoice": None,
            "livemode": False,
            "metadata": dict(self.metadata),
            "mode": "payment",
            "payment_intent": intent if intent is not None else self.payment_intent,
            "payment_link": None,
            "payment_method_types": ["card"],
            "payment_status": self.payment_status.value,
            "setup_intent": None,
            "status": self.status.value,
            "submit_type": None,
            "subscription": None,
            "success_url": self.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            # Stripe clears the URL once the session can no longer be paid.
            "url": self.hosted_url(public_base) if self.status is SessionStatus.OPEN else None,
        }


@dataclass(slots=True)
class PaymentIntent:
    id: str
    created: int
    amount: int
    currency: str
    metadata: dict[str, str]
    status: IntentStatus
    charge_id: str
    amount_refunded: int = 0

    @property
    def amount_received(self) -> int:
        return self.amount if self.status is IntentStatus.SUCCEEDED else 0

    @property
    def refundable(self) -> int:
        return self.amount_received - self.amount_refunded

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_received": self.amount_received,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": None,
            "description": None,
            "last_payment_error": None,
            "latest_charge": self.charge_id,
            "livemode": False,
            "metadata": dict(self.metadata),
            "payment_method_types": ["card"],
            "status": self.status.value,
        }


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    created: int
    amount: int
    currency: str
    payment_intent: str
    charge: str
    metadata: dict[str, str]
    reason: str | None

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": None,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "metadata": dict(self.metadata),
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "receipt_number": None,
            "status": "succeeded",
        }


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The API request that caused an event; both null for automatic events (sweeper, browser)."""

    id: str | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)
class Event:
    id: str
    type: str
    created: int
    data_object: dict[str, Any]
    request: RequestInfo
    # The exact bytes every delivery of this event carries, fixed when the event is created:
    # Stripe snapshots the object at event time and re-sends the same payload on every retry.
    payload: bytes = field(default=b"", repr=False)

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "event",
            "api_version": stripe.api_version,
            "created": self.created,
            "data": {"object": self.data_object},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": self.request.id, "idempotency_key": self.request.idempotency_key},
            "type": self.type,
        }
