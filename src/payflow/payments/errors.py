"""Payment errors."""

from __future__ import annotations

from payflow.core.errors import DomainError, ServiceUnavailable, ValidationFailed


class PaymentGatewayError(DomainError):
    """Stripe (or the sandbox) failed or refused a call; nothing was charged by it.

    `http_status` and `stripe_code` say what Stripe answered (both None when no answer came),
    for callers that treat some refusals as outcomes; the detail never carries Stripe's message,
    which can quote the API key.
    """

    code = "PAYMENT_GATEWAY_ERROR"
    title = "The payment provider failed"

    def __init__(
        self,
        detail: str | None = None,
        *,
        http_status: int | None = None,
        stripe_code: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.stripe_code = stripe_code


class AmountRefusedByGateway(PaymentGatewayError):
    """Stripe refuses to charge this amount (under its minimum charge, or over its maximum): the
    request is at fault, not the gateway, so it is a 400 like any amount payflow refuses itself."""

    code = "VALIDATION_ERROR"
    title = "The amount cannot be paid by card"


# Stripe's codes for an amount outside the range it charges.
AMOUNT_REFUSALS = frozenset({"amount_too_small", "amount_too_large"})


class InvalidSignature(DomainError):
    code = "INVALID_SIGNATURE"
    title = "The webhook signature is missing, wrong or stale"


class MalformedEvent(ValidationFailed):
    """A correctly signed webhook whose envelope is not a Stripe event (no id, type or object):
    only someone holding the signing secret can send one, and nothing acts on it."""

    title = "The webhook is not a well-formed Stripe event"


class WebhookNotProcessed(ServiceUnavailable):
    """A verified event could not be processed now (rolled back, kept as unprocessed): 503, so
    that Stripe delivers it again."""

    title = "The event could not be processed now"
