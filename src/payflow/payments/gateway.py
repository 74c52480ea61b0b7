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
from typing import Any, TypeVar

import httpx
import stripe
import structlog

from payflow.payments.errors import (
    AMOUNT_REFUSALS,
    AmountRefusedByGateway,
    InvalidSignature,
    PaymentGatewayError,
)

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_NETWORK_RETRIES = 2
WEBHOOK_TOLERANCE = 300

log = structlog.get_logger("payflow.payments")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str | None
    payment_intent: str | None
    payment_status: str  # paid | unpaid | no_payment_required
    status: str | None  # open | complete | expired
    amount_total: int | None
    currency: str | None  # ISO 4217 upper-case, as payflow writes currencies (Stripe: lower)
    client_reference_id: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, data: Mapping[str, Any]) -> CheckoutSession:
        return cls(
            id=str(data["id"]),
            url=data.get("url"),
            payment_intent=_id_of(data.get("payment_intent")),
            payment_status=str(data["payment_status"]),
            status=data.get("status"),
            amount_total=data.get("amount_total"),
            currency=_upper(data.get("currency")),
            client_reference_id=data.get("client_reference_id"),
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


def _id_of(value: object) -> str | None:
    """An expandable field: an id, or the expanded object carrying one."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return str(value["id"])
    return str(getattr(value, "id", value))


def _upper(value: object) -> str | None:
    return str(value).upper() if value is not None else None


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
        self._webhook_secret = webhook_secret
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
        try:
            stripe.WebhookSignature.verify_header(
                payload, sig_header, self._webhook_secret, tolerance
            )
            data = json.loads(payload)
            return WebhookEvent(
                id=str(data["id"]),
                type=str(data["type"]),
                created=int(data["created"]),
                data_object=dict(data["data"]["object"]),
            )
        except (stripe.SignatureVerificationError, ValueError, KeyError, TypeError) as exc:
            # UnicodeDecodeError and JSONDecodeError are ValueErrors.
            raise InvalidSignature() from exc

    async def _call(self, operation: str, request: Awaitable[T]) -> T:
        try:
            return await request
        except stripe.StripeError as exc:
            raise _gateway_error(operation, exc) from exc
