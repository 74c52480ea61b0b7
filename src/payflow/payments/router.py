"""/webhooks/stripe: Stripe's events, verified and handed to the handler the app registers."""

from __future__ import annotations

from fastapi import APIRouter, Request

from payflow.core.schemas import problem_responses
from payflow.payments import webhooks
from payflow.wiring import ContextDep


def webhook_router(handler: webhooks.WebhookHandler) -> APIRouter:
    router = APIRouter(tags=["payments"])

    @router.post(
        "/webhooks/stripe",
        summary="Stripe events",
        responses=problem_responses("INVALID_SIGNATURE", "SERVICE_UNAVAILABLE"),
    )
    async def stripe_webhook(request: Request, ctx: ContextDep) -> dict[str, bool]:
        """Stripe's events, verified over the raw body; each takes effect once."""
        body = await request.body()
        await webhooks.handle_webhook(ctx, handler, body, request.headers.get("stripe-signature"))
        return {"received": True}

    return router
