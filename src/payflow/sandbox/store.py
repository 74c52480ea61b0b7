"""The sandbox's state: sessions, payment intents, refunds and events, and every transition.

All of it lives in memory and changes only in synchronous methods, so on one event loop each
transition is atomic without locks. Each transition that Stripe would announce creates an event
(a frozen snapshot of the object) and hands it to `publish` for delivery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from payflow.sandbox.checkout import (
    check_known,
    check_redirects,
    integer,
    metadata,
    optional_string,
    parse_new_session,
)
from payflow.sandbox.currencies import format_amount
from payflow.sandbox.errors import (
    parameter_invalid,
    parameter_missing,
    resource_missing,
    state_conflict,
)
from payflow.sandbox.objects import (
    CheckoutSession,
    Event,
    IntentStatus,
    PaymentIntent,
    PaymentStatus,
    Refund,
    RequestInfo,
    SessionStatus,
    new_id,
)

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
AUTOMATIC = RequestInfo()


class Outcome(StrEnum):
    """What the buyer does on the hosted page."""

    PAY = "pay"  # a card that succeeds at once
    DECLINE = "decline"  # an async payment method whose payment later fails
    PAY_LATER = "pay-later"  # an async payment method whose payment later succeeds


class SandboxStore:
    def __init__(
        self,
        *,
        public_base: str,
        redirect_base: str,
        min_expires_in: int,
        max_expires_in: int,
        publish: Callable[[Event], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.public_base = public_base
        self.redirect_base = redirect_base
        self.min_expires_in = min_expires_in
        self.max_expires_in = max_expires_in
        self._publish = publish
        self._clock = clock
        self.sessions: dict[str, CheckoutSession] = {}
        self.intents: dict[str, PaymentIntent] = {}
        self.refunds: dict[str, Refund] = {}
        self.events: dict[str, Event] = {}

    def now(self) -> int:
        return int(self._clock())

    # -- checkout sessions -------------------------------------------------------------------

    def create_session(self, params: Mapping[str, Any]) -> CheckoutSession:
        now = self.now()
        new = parse_new_session(
            params, now=now, min_expires_in=self.min_expires_in, max_expires_in=self.max_expires_in
        )
        check_redirects(new, self.redirect_base)
        session = CheckoutSession(
            id=new_id("cs_test"),
            created=now,
            expires_at=new.expires_at,
            currency=new.currency,
            line_items=new.line_items,
            success_url=new.success_url,
            cancel_url=new.cancel_url,
            client_reference_id=new.client_reference_id,
            customer_email=new.customer_email,
            metadata=new.metadata,
            payment_intent_metadata=new.payment_intent_metadata,
        )
        self.sessions[session.id] = session
        return session

    def find_session(self, session_id: str) -> CheckoutSession | None:
        """The session as of now: one past its expires_at is expired first (and announced)."""
        session = self.sessions.get(session_id)
        if session is not None and self._is_due(session):
            self._expire(session, AUTOMATIC, deliver=True)
        return session

    def session(self, session_id: str) -> CheckoutSession:
        session = self.find_session(session_id)
        if session is None:
            raise resource_missing("checkout.session", session_id, "session")
        return session

    def session_json(self, session: CheckoutSession, expand: Iterable[str] = ()) -> dict[str, Any]:
        intent = None
        if "payment_intent" in expand and session.payment_intent is not None:
            intent = self.intents[session.payment_intent].to_stripe()
        return session.to_stripe(self.public_base, intent)

    def expire_session(
        self, session_id: str, request: RequestInfo = AUTOMATIC, *, deliver: bool = True
    ) -> CheckoutSession:
        session = self.session(session_id)
        if session.status is not SessionStatus.OPEN:
            raise state_conflict(
                'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
                f'Session has a status of "{session.status.value}".'
            )
        self._expire(session, request, deliver=deliver)
        return session

    def expire_due(self) -> list[CheckoutSession]:
        """Expire every open session past its expires_at; what the sweeper runs."""
        due = [s for s in self.sessions.values() if self._is_due(s)]
        for session in due:
            self._expire(session, AUTOMATIC, deliver=True)
        return due

    def complete_session(self, session_id: str, outcome: Outcome) -> CheckoutSession:
        """The buyer paid (or started an async payment) on the hosted page."""
        session = self.session(session_id)
        if session.status is not SessionStatus.OPEN:
            raise state_conflict(f"This Checkout Session is {session.status.value}.")
        succeeded = outcome is Outcome.PAY
        intent = PaymentIntent(
            id=new_id("pi"),
            created=self.now(),
            amount=session.amount_total,
            currency=session.currency,
            metadata=dict(session.payment_intent_metadata),
            status=IntentStatus.SUCCEEDED if succeeded else IntentStatus.PROCESSING,
            charge_id=new_id("ch"),
        )
        self.intents[intent.id] = intent
        session.payment_intent = intent.id
        session.status = SessionStatus.COMPLETE
        session.payment_status = PaymentStatus.PAID if succeeded else PaymentStatus.UNPAID
        self._emit("checkout.session.completed", session, AUTOMATIC)
        return session

    def settle_async_payment(self, session_id: str, *, succeeded: bool) -> CheckoutSession:
        """The async payment method reports back, as Stripe's async_payment_* events do."""
        session = self.session(session_id)
        intent = self.intents.get(session.payment_intent or "")
        if intent is None or intent.status is not IntentStatus.PROCESSING:
            raise state_conflict("This Checkout Session has no payment awaiting its result.")
        if succeeded:
            intent.status = IntentStatus.SUCCEEDED
            session.payment_status = PaymentStatus.PAID
            self._emit("checkout.session.async_payment_succeeded", session, AUTOMATIC)
        else:
            intent.status = IntentStatus.REQUIRES_PAYMENT_METHOD
            self._emit("checkout.session.async_payment_failed", session, AUTOMATIC)
        return session

    # -- payment intents and refunds ---------------------------------------------------------

    def payment_intent(self, intent_id: str) -> PaymentIntent:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id, "intent")
        return intent

    def create_refund(self, params: Mapping[str, Any]) -> Refund:
        check_known(params, {"payment_intent", "charge", "amount", "metadata", "reason", "expand"})
        intent = self._refunded_intent(params)
        reason = optional_string(params, "reason", max_length=50)
        if reason is not None and reason not in REFUND_REASONS:
            raise parameter_invalid(
                "reason",
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
            )
        refund_metadata = metadata(params.get("metadata"), "metadata")
        amount = integer(params["amount"], "amount", minimum=1) if "amount" in params else None
        if intent.status is not IntentStatus.SUCCEEDED:
            raise state_conflict(
                f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
                code="payment_intent_unexpected_state",
                param="payment_intent",
            )
        if intent.refundable <= 0:
            raise state_conflict(
                f"Charge {intent.charge_id} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = intent.refundable if amount is None else amount
        if amount > intent.refundable:
            raise state_conflict(
                f"Refund amount ({format_amount(amount, intent.currency)}) is greater than "
                f"unrefunded amount on charge ({format_amount(intent.refundable, intent.currency)})",
                code="amount_too_large",
                param="amount",
            )
        intent.amount_refunded += amount
        refund = Refund(
            id=new_id("re"),
            created=self.now(),
            amount=amount,
            currency=intent.currency,
            payment_intent=intent.id,
            charge=intent.charge_id,
            metadata=refund_metadata,
            reason=reason,
        )
        self.refunds[refund.id] = refund
        return refund

    def _refunded_intent(self, params: Mapping[str, Any]) -> PaymentIntent:
        if "payment_intent" in params:
            intent_id = str(params["payment_intent"])
            intent = self.intents.get(intent_id)
            if intent is None:
                raise resource_missing("payment_intent", intent_id, "payment_intent")
            return intent
        if "charge" in params:
            charge_id = str(params["charge"])
            for intent in self.intents.values():
                if intent.charge_id == charge_id:
                    return intent
            raise resource_missing("charge", charge_id, "charge")
        raise parameter_missing(
            "payment_intent",
            "One of the following params should be provided for this request: payment_intent or charge.",
        )

    # -- events ------------------------------------------------------------------------------

    def event(self, event_id: str) -> Event | None:
        return self.events.get(event_id)

    def _is_due(self, session: CheckoutSession) -> bool:
        return session.status is SessionStatus.OPEN and session.expires_at <= self.now()

    def _expire(self, session: CheckoutSession, request: RequestInfo, *, deliver: bool) -> None:
        session.status = SessionStatus.EXPIRED
        self._emit("checkout.session.expired", session, request, deliver=deliver)

    def _emit(
        self, type_: str, session: CheckoutSession, request: RequestInfo, *, deliver: bool = True
    ) -> Event:
        event = Event(
            id=new_id("evt"),
            type=type_,
            created=self.now(),
            data_object=self.session_json(session),
            request=request,
        )
        # Pretty-printed like Stripe's own payloads: a receiver that verifies a re-serialised
        # body instead of the raw bytes fails here exactly as it would against Stripe.
        event.payload = json.dumps(event.to_stripe(), indent=2, ensure_ascii=False).encode()
        self.events[event.id] = event
        if deliver:
            self._publish(event)
        return event
