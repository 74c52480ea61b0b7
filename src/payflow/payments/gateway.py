"""The payment gateway: Stripe Checkout through the official SDK, async calls only.

One `StripeClient` per gateway, never the SDK's global `stripe.api_key`. `api_base` points it at
real Stripe (None) or at the payments sandbox. Every mutating call carries an idempotency key, so
the SDK's own network retries are safe. Whatever fails — Stripe's refusal, its outage, the
network — surfaces as PaymentGatewayError; a bad webhook as InvalidSignature. Results are small
typed values, not SDK objects, so the rest of payflow never touches the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, cast, get_args

import httpx
import stripe
import structlog

from payflow.payments.errors import (
    AMOUNT_REFUSALS,
    AmountRefusedByGateway,
    InvalidSignature,
    MalformedEvent,
    PaymentGatewayError,
)

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_NETWORK_RETRIES = 2
WEBHOOK_TOLERANCE = 300

log = structlog.get_logger("payflow.payments")
T = TypeVar("T")


class MalformedObject(ValueError):
    """A Stripe object lacks a field payflow needs, or holds one of the wrong type."""


PaymentStatus = Literal["paid", "unpaid", "no_payment_required"]
SessionStatus = Literal["open", "complete", "expired"]
PAYMENT_STATUSES: frozenset[str] = frozenset(get_args(PaymentStatus))
SESSION_STATUSES: frozenset[str] = frozenset(get_args(SessionStatus))


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str | None
    payment_intent: str | None
    payment_status: PaymentStatus
    status: SessionStatus | None
    amount_total: int | None
    currency: str | None  # ISO 4217 upper-case, as payflow writes currencies (Stripe: lower)
    client_reference_id: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, data: Mapping[str, Any]) -> CheckoutSession:
        """Raises MalformedObject for anything Stripe would never send: a verified event can
        still carry it (whoever holds the signing secret), and it must not reach the database."""
        payment_status = _text(data, "payment_status")
        if payment_status not in PAYMENT_STATUSES:
            raise MalformedObject(f"payment_status {payment_status!r} is not one of Stripe's")
        status = _optional_text(data, "status")
        if status is not None and status not in SESSION_STATUSES:
            raise MalformedObject(f"status {status!r} is not one of Stripe's")
        return cls(
            id=_text(data, "id"),
            url=_optional_text(data, "url", 4096),
            payment_intent=_id_of(data.get("payment_intent")),
            payment_status=cast(PaymentStatus, payment_status),
            status=cast(SessionStatus | None, status),
            amount_total=_optional_amount(data, "amount_total"),
            currency=_upper(_optional_text(data, "currency", 3)),
            client_reference_id=_optional_text(data, "client_reference_id"),
            metadata=_metadata(data.get("metadata")),
        )


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    status: str
    amount: int
    amount_received: int
    currency: str
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, data: Mapping[str, Any]) -> PaymentIntent:
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            amount=int(data["amount"]),
            amount_received=int(data.get("amount_received") or 0),
            currency=str(data["currency"]).upper(),
            metadata=_metadata(data.get("metadata")),
        )


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    status: str | None  # succeeded | pending | requires_action | failed | canceled
    amount: int


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified Stripe event: what it says happened, and the object as Stripe sent it."""

    id: str
    type: str
    created: int
    data_object: dict[str, Any]

    @property
    def checkout_session(self) -> CheckoutSession | None:
        if self.data_object.get("object") != "checkout.session":
            return None
        return CheckoutSession.from_stripe(self.data_object)


# Stripe's ids and short strings fit in 255 characters; payflow's columns hold no more.
MAX_TEXT = 255
# Stripe's largest amount is 8 digits of minor units (99,999,999); anything beyond a BIGINT is
# refused here, before arithmetic or the database meet it.
MAX_AMOUNT = 2**63 - 1


def _storable(value: str, name: str, max_length: int) -> str:
    if len(value) > max_length:
        raise MalformedObject(f"{name} is longer than {max_length} characters")
    try:
        value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate, from a JSON escape
        raise MalformedObject(f"{name} is not valid text") from exc
    if "\x00" in value:
        raise MalformedObject(f"{name} holds a NUL character")
    return value


def _optional_text(data: Mapping[str, Any], name: str, max_length: int = MAX_TEXT) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedObject(f"{name} is not a string")
    return _storable(value, name, max_length)


def _text(data: Mapping[str, Any], name: str) -> str:
    value = _optional_text(data, name)
    if value is None:
        raise MalformedObject(f"{name} is missing")
    return value


def _optional_amount(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    # bool is an int in Python; Stripe never sends one for an amount.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
        raise MalformedObject(f"{name} is not an amount in minor units")
    return value


def _id_of(value: object) -> str | None:
    """An expandable field: an id, or the expanded object carrying one."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("id")
    if not isinstance(value, str):
        raise MalformedObject("an expandable field holds neither an id nor an object with one")
    return _storable(value, "id", MAX_TEXT)


def _upper(value: str | None) -> str | None:
    return value.upper() if value is not None else None


def _metadata(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


class SdkHttpClient(stripe.HTTPXClient):
    """The SDK's httpx client, handing the encoded form body to httpx as `content`.

    The SDK passes it as `data=<str>`, which httpx deprecates with a warning on every POST.
    """

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> tuple[Any, dict[str, Any]]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return args, kwargs


def _gateway_error(operation: str, exc: stripe.StripeError) -> PaymentGatewayError:
    error = exc.error
    kind = getattr(error, "type", None) or type(exc).__name__
    param = getattr(error, "param", None)
    if exc.http_status is None:
        detail = f"Stripe could not be reached to {operation}"
    else:
        reason = ", ".join(part for part in (kind, exc.code, param and f"param {param}") if part)
        detail = f"Stripe refused to {operation} (HTTP {exc.http_status}: {reason})"
    log.warning(
        "payments.gateway_error",
        operation=operation,
        http_status=exc.http_status,
        error_type=kind,
        stripe_code=exc.code,
        param=param,
        stripe_request_id=exc.request_id,
    )
    if exc.http_status == 400 and exc.code in AMOUNT_REFUSALS:
        return AmountRefusedByGateway(
            "The amount is outside the range a card payment can have",
            http_status=exc.http_status,
            stripe_code=exc.code,
        )
    return PaymentGatewayError(detail, http_status=exc.http_status, stripe_code=exc.code)


def webhook_secrets(configured: str) -> tuple[str, ...]:
    """The webhook signing secrets of `STRIPE_WEBHOOK_SECRET`: one, or several comma-separated
    while a rotation is under way (the new one first)."""
    return tuple(part.strip() for part in configured.split(",") if part.strip())


def _signed_by(payload: bytes, sig_header: str | None, secret: str, tolerance: int) -> bool:
    try:
        stripe.WebhookSignature.verify_header(payload, sig_header, secret, tolerance)
    except (stripe.SignatureVerificationError, ValueError):
        # A body that is not UTF-8 fails inside the check with a ValueError.
        return False
    return True


class StripeGateway:
    def __init__(
        self,
        secret_key: str,
        api_base: str | None,
        webhook_secret: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_network_retries: int = DEFAULT_MAX_NETWORK_RETRIES,
    ) -> None:
        # Several comma-separated secrets during a rotation: a signature by any of them is valid.
        self._webhook_secrets = webhook_secrets(webhook_secret)
        self._http = SdkHttpClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def aclose(self) -> None:
        """Close the connection pool; the gateway is unusable afterwards."""
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK

    async def create_checkout_session(
        self,
        *,
        order_id: str,
        product_name: str,
        unit_amount: int,
        quantity: int,
        currency: str,
        expires_at: datetime,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession:
        """A hosted Checkout session for one order; the order id is its reference and metadata."""
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        session = await self._call(
            "create a checkout session",
            self._client.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "line_items": [
                        {
                            "price_data": {
                                "currency": currency.lower(),
                                "unit_amount": unit_amount,
                                "product_data": {"name": product_name},
                            },
                            "quantity": quantity,
                        }
                    ],
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "client_reference_id": order_id,
                    "metadata": {"order_id": order_id},
                    "payment_intent_data": {"metadata": {"order_id": order_id}},
                    "expires_at": int(expires_at.timestamp()),
                },
                {"idempotency_key": idempotency_key},
            ),
        )
        return CheckoutSession.from_stripe(session.to_dict())

    async def retrieve_session(self, session_id: str) -> CheckoutSession:
        session = await self._call(
            "retrieve a checkout session",
            self._client.v1.checkout.sessions.retrieve_async(session_id),
        )
        return CheckoutSession.from_stripe(session.to_dict())

    async def expire_session(self, session_id: str) -> CheckoutSession:
        """Expire an open session; one already expired or complete is returned as it is."""
        try:
            session = await self._call(
                "expire a checkout session",
                self._client.v1.checkout.sessions.expire_async(session_id),
            )
        except PaymentGatewayError as exc:
            # Stripe answers 400 for a session that is no longer open: find out what it became.
            if exc.http_status != 400:
                raise
            current = await self.retrieve_session(session_id)
            if current.status == "open":
                raise
            return current
        return CheckoutSession.from_stripe(session.to_dict())

    async def retrieve_payment_intent(self, intent_id: str) -> PaymentIntent:
        intent = await self._call(
            "retrieve a payment intent", self._client.v1.payment_intents.retrieve_async(intent_id)
        )
        return PaymentIntent.from_stripe(intent.to_dict())

    async def refund(self, payment_intent_id: str, amount: int, idempotency_key: str) -> Refund:
        """Refund `amount` (minor units) of a payment."""
        refund = await self._call(
            "refund a payment",
            self._client.v1.refunds.create_async(
                {"payment_intent": payment_intent_id, "amount": amount},
                {"idempotency_key": idempotency_key},
            ),
        )
        return Refund(id=refund.id, status=refund.status, amount=refund.amount)

    def construct_event(
        self, payload: bytes, sig_header: str | None, tolerance: int = WEBHOOK_TOLERANCE
    ) -> WebhookEvent:
        """The event in a webhook body, after checking its signature over the raw bytes."""
        if not any(
            _signed_by(payload, sig_header, secret, tolerance) for secret in self._webhook_secrets
        ):
            raise InvalidSignature()
        try:
            data = json.loads(payload)
            created = data["created"]
            if isinstance(created, bool) or not isinstance(created, int):
                raise MalformedObject("created is not a timestamp")
            return WebhookEvent(
                id=_text(data, "id"),
                type=_text(data, "type"),
                created=created,
                data_object=dict(data["data"]["object"]),
            )
        except (MalformedObject, ValueError, KeyError, TypeError) as exc:
            # JSONDecodeError is a ValueError; a non-object where an object belongs a TypeError.
            raise MalformedEvent(f"The signed event is malformed: {exc}") from exc

    async def _call(self, operation: str, request: Awaitable[T]) -> T:
        try:
            return await request
        except stripe.StripeError as exc:
            raise _gateway_error(operation, exc) from exc
