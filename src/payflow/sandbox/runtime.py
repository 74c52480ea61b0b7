"""The running sandbox: its state, its webhook worker, its sweeper and its timed async payments.

`start()` and `stop()` bind the background tasks to the running event loop. The sandbox app's
lifespan calls them; an app that mounts the sandbox must run that lifespan (Starlette does not
run a mounted app's lifespan), e.g. `async with sandbox_app.router.lifespan_context(sandbox_app)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable

import structlog

from payflow.sandbox.config import SandboxConfig
from payflow.sandbox.errors import StripeApiError
from payflow.sandbox.faults import FaultSwitch
from payflow.sandbox.idempotency import IdempotencyCache
from payflow.sandbox.objects import CheckoutSession, Event
from payflow.sandbox.store import Outcome, SandboxStore
from payflow.sandbox.webhooks import Delivery, WebhookDispatcher

log = structlog.get_logger("payflow.sandbox")


class Sandbox:
    def __init__(self, config: SandboxConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.webhooks = WebhookDispatcher(
            config.webhook_url,
            config.webhook_secret,
            timeout=config.delivery_timeout,
            retry_delays=config.retry_delays,
            clock=clock,
        )
        self.store = SandboxStore(
            public_base=config.public_base,
            redirect_base=config.redirect_base,
            min_expires_in=config.min_expires_in,
            max_expires_in=config.max_expires_in,
            publish=self.webhooks.enqueue,
            clock=clock,
        )
        self.faults = FaultSwitch()
        self.idempotency = IdempotencyCache()
        # Signs the hosted page's forms (hosted.py): made at start, never leaves the process.
        self.form_secret = secrets.token_bytes(32)
        self._sweeper: asyncio.Task[None] | None = None
        self._timers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.webhooks.start()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="sandbox-sweeper")

    async def stop(self) -> None:
        tasks = [t for t in (self._sweeper, *self._timers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sweeper = None
        self._timers.clear()
        await self.webhooks.stop()

    def checkout(self, session_id: str, outcome: Outcome) -> CheckoutSession:
        """The buyer's choice on the hosted page; an async method reports back after a delay."""
        session = self.store.complete_session(session_id, outcome)
        if outcome is not Outcome.PAY:
            self._settle_later(session.id, succeeded=outcome is Outcome.PAY_LATER)
        return session

    async def redeliver(self, event: Event, times: int = 1) -> list[Delivery]:
        """Send an event again now, `times` copies at once (duplicate-delivery tests)."""
        first = len(self.webhooks.attempts_of(event.id)) + 1
        return list(
            await asyncio.gather(
                *(self.webhooks.deliver(event, first + copy) for copy in range(times))
            )
        )

    def _settle_later(self, session_id: str, *, succeeded: bool) -> None:
        async def settle() -> None:
            await asyncio.sleep(self.config.async_payment_delay)
            try:
                self.store.settle_async_payment(session_id, succeeded=succeeded)
            except StripeApiError as exc:
                log.warning(
                    "sandbox.async_payment_not_settled", session_id=session_id, reason=str(exc)
                )

        task = asyncio.create_task(settle())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                expired = self.store.expire_due()
            except Exception:  # the sweeper must outlive any one bad pass
                log.exception("sandbox.sweep_failed")
                continue
            for session in expired:
                log.info("sandbox.session_expired", session_id=session.id)
