"""The sandbox's control API under /_sandbox: not Stripe's, for tests and operators.

It answers only to the sandbox's own API key (Bearer, as the Stripe API does): whoever may not
use the sandbox as payflow does may not turn its webhooks off, arm its faults or pay for a buyer
either. It lists events and their deliveries, re-delivers an event (several
copies at once for duplicate-delivery tests), acts as the buyer without a browser, expires a
session (optionally without announcing it, as if the event were lost), switches webhook delivery
off and on, and arms the fault switch of the Stripe API.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from payflow.sandbox.api import authenticate
from payflow.sandbox.errors import StripeApiError, resource_missing
from payflow.sandbox.faults import FaultMode
from payflow.sandbox.objects import Event
from payflow.sandbox.runtime import Sandbox
from payflow.sandbox.store import Outcome
from payflow.sandbox.webhooks import Delivery


def _delivery(delivery: Delivery) -> dict[str, Any]:
    return {**asdict(delivery), "ok": delivery.ok}


def build_control_router(sandbox: Sandbox) -> APIRouter:
    store = sandbox.store
    webhooks = sandbox.webhooks

    def operator(request: Request) -> None:
        authenticate(request, sandbox.config.api_key)

    router = APIRouter(prefix="/_sandbox", dependencies=[Depends(operator)])

    def summary(event: Event) -> dict[str, Any]:
        return {
            "id": event.id,
            "type": event.type,
            "created": event.created,
            "object_id": event.data_object.get("id"),
            "deliveries": [_delivery(d) for d in webhooks.attempts_of(event.id)],
        }

    def event_or_404(event_id: str) -> Event:
        event = store.event(event_id)
        if event is None:
            raise resource_missing("event", event_id, "id")
        return event

    @router.get("")
    async def overview() -> dict[str, Any]:
        return {
            "public_base": sandbox.config.public_base,
            "webhook_url": webhooks.url,
            "webhooks_enabled": webhooks.enabled,
            "sessions": len(store.sessions),
            "events": len(store.events),
            "fault": sandbox.faults.describe(),
        }

    @router.get("/events")
    async def list_events(
        event_type: Annotated[str | None, Query(alias="type")] = None,
        object_id: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        events = [
            summary(e)
            for e in store.events.values()
            if (event_type is None or e.type == event_type)
            and (object_id is None or e.data_object.get("id") == object_id)
        ]
        return {"data": events}

    @router.get("/events/{event_id}")
    async def show_event(event_id: str) -> dict[str, Any]:
        event = event_or_404(event_id)
        return {**summary(event), "event": event.to_stripe()}

    @router.post("/events/{event_id}/deliver")
    async def redeliver(
        event_id: str, times: Annotated[int, Query(ge=1, le=100)] = 1
    ) -> dict[str, Any]:
        deliveries = await sandbox.redeliver(event_or_404(event_id), times)
        return {"data": [_delivery(d) for d in deliveries]}

    @router.get("/deliveries")
    async def list_deliveries() -> dict[str, Any]:
        return {"data": [_delivery(d) for d in webhooks.deliveries]}

    @router.get("/sessions/{session_id}")
    async def show_session(session_id: str) -> dict[str, Any]:
        return store.session_json(store.session(session_id))

    @router.post("/sessions/{session_id}/expire")
    async def expire_session(session_id: str, notify: bool = True) -> dict[str, Any]:
        return store.session_json(store.expire_session(session_id, deliver=notify))

    @router.post("/sessions/{session_id}/{action}")
    async def act(session_id: str, action: str) -> dict[str, Any]:
        try:
            outcome = Outcome(action)
        except ValueError:
            raise StripeApiError(
                404, f"Unknown action {action!r}: use pay, pay-later, decline or expire"
            ) from None
        session = sandbox.checkout(session_id, outcome)
        return {"session": store.session_json(session), "redirect_url": session.success_redirect()}

    @router.get("/faults")
    async def show_fault() -> dict[str, Any]:
        return sandbox.faults.describe()

    @router.post("/faults")
    async def arm_fault(
        mode: FaultMode = FaultMode.ERROR,
        count: Annotated[int | None, Query(ge=1)] = None,
        seconds: Annotated[float, Query(gt=0, le=120)] = 5.0,
    ) -> dict[str, Any]:
        sandbox.faults.set(mode, count=count, seconds=seconds)
        return sandbox.faults.describe()

    @router.delete("/faults")
    async def clear_fault() -> dict[str, Any]:
        sandbox.faults.clear()
        return sandbox.faults.describe()

    @router.get("/webhooks")
    async def show_webhooks() -> dict[str, Any]:
        return {"url": webhooks.url, "enabled": webhooks.enabled}

    @router.post("/webhooks")
    async def switch_webhooks(enabled: bool) -> dict[str, Any]:
        webhooks.enabled = enabled
        return {"url": webhooks.url, "enabled": webhooks.enabled}

    return router
