"""Stripe webhooks (docs/api.md, Orders): verify, record in the inbox, hand to the registered handler.

A delivery is verified over its raw bytes, recorded in the inbox (`webhook_events`, unique on the
event id) and handed to the handler the composition root registered (app.py: orders' checkout
events) in the same transaction, so a duplicate — concurrent ones included — is acknowledged and
does nothing. A verified event whose processing fails is answered 503 (Stripe delivers it again)
and kept in the inbox, unprocessed. This module knows nothing of orders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import structlog

from payflow.core.errors import DomainError, ServiceUnavailable
from payflow.core.unit_of_work import UnitOfWork
from payflow.payments import repository
from payflow.payments.errors import WebhookNotProcessed
from payflow.payments.gateway import WebhookEvent
from payflow.wiring import AppContext

log = structlog.get_logger("payflow.payments")

# What processing an event did; recorded on its inbox row and counted.
WebhookOutcome = Literal[
    "duplicate",  # already processed: acknowledged, nothing done
    "ignored",  # a type payflow does not act on
    "malformed",  # a verified event whose object payflow cannot read
    "unknown_order",
    "session_mismatch",
    "no_change",  # the order was already past what the event says
    "already_settled",
    "awaiting_payment",
    "fulfilled",
    "failed",
    "cancelled",
    "amount_mismatch",
    "refunded_out_of_stock",
    "refunded_not_creditable",
]

# Acts on one newly recorded event inside its transaction; says what it did.
WebhookHandler = Callable[[AppContext, UnitOfWork, WebhookEvent], Awaitable[WebhookOutcome]]


async def handle_webhook(
    ctx: AppContext, handler: WebhookHandler, payload: bytes, signature: str | None
) -> WebhookOutcome:
    """Verify, record and act on one delivery; returns what it did."""
    event = ctx.gateway.construct_event(payload, signature)

    async def work(uow: UnitOfWork) -> WebhookOutcome:
        if not await repository.record_event(uow.conn, event.id, event.type, event.data_object):
            return "duplicate"
        outcome = await handler(ctx, uow, event)
        await repository.finish_event(uow.conn, event.id, outcome)
        return outcome

    try:
        outcome = await ctx.db.transaction(work)
    except ServiceUnavailable:
        raise
    except Exception as error:  # whatever it is, Stripe must deliver the event again
        await _keep_unprocessed(ctx, event, error)
        raise WebhookNotProcessed(
            "The event could not be processed now; deliver it again later"
        ) from error
    ctx.metrics.webhooks.labels(event.type, outcome).inc()
    log.info("webhook.processed", event_id=event.id, type=event.type, outcome=outcome)
    return outcome


async def _keep_unprocessed(ctx: AppContext, event: WebhookEvent, error: Exception) -> None:
    """Processing a verified event failed and was rolled back. It is answered 503, so Stripe
    delivers it again (a 4xx would end in Stripe giving up on a paid order), and kept in the inbox
    as unprocessed, so `payflow audit` sees what it announced and a redelivery takes it up."""
    cause = error.code if isinstance(error, DomainError) else type(error).__name__
    outcome = f"error:{cause}"
    await ctx.db.transaction(
        lambda uow: repository.record_failure(
            uow.conn, event.id, event.type, event.data_object, outcome
        )
    )
    ctx.metrics.webhooks.labels(event.type, outcome).inc()
    log.error(
        "webhook.not_processed",
        event_id=event.id,
        type=event.type,
        cause=cause,
        exc_info=error,
    )
