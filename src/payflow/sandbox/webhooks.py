"""Webhook delivery: events signed exactly as Stripe signs them, POSTed to the webhook URL.

`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, computed afresh
for every attempt. Deliveries run on a background worker, never inside the request that caused
the event; first attempts go out in the order the events happened, and a failed attempt (network
error or non-2xx) is retried after each of `retry_delays` without holding up later events.
Every attempt is kept in a log that the control API shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from payflow.sandbox.objects import Event

log = structlog.get_logger("payflow.sandbox")

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    event_type: str
    attempt: int
    at: float
    status: int | None  # the receiver's HTTP status; None when no response came back
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookDispatcher:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float,
        retry_delays: tuple[float, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.retry_delays = retry_delays
        self.enabled = True
        self.deliveries: list[Delivery] = []
        self._clock = clock
        # Created by start(), on the loop that runs the worker; events published before then wait.
        self._queue: asyncio.Queue[tuple[Event, int]] | None = None
        self._waiting: list[Event] = []
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._worker is None:
            self._queue = asyncio.Queue()
            for event in self._waiting:
                self._queue.put_nowait((event, 1))
            self._waiting.clear()
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._worker = asyncio.create_task(self._run(self._queue), name="sandbox-webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._worker, *self._retries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._worker = None
        self._queue = None
        self._retries.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def enqueue(self, event: Event) -> None:
        if not self.enabled:
            self._record(event, 0, None, "not sent: deliveries are disabled", 0.0)
            return
        if self._queue is None:
            self._waiting.append(event)
        else:
            self._queue.put_nowait((event, 1))

    def attempts_of(self, event_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.event_id == event_id]

    async def deliver(self, event: Event, attempt: int | None = None) -> Delivery:
        """One signed POST of the event, now; recorded in the log."""
        if attempt is None:
            attempt = len(self.attempts_of(event.id)) + 1
        client = self._client or httpx.AsyncClient(timeout=self.timeout)
        started = time.perf_counter()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(event.payload, self.secret, int(self._clock())),
            "User-Agent": USER_AGENT,
            "Cache-Control": "no-cache",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = await client.post(self.url, content=event.payload, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            if client is not self._client:
                await client.aclose()
        return self._record(event, attempt, status, error, (time.perf_counter() - started) * 1000)

    async def _run(self, queue: asyncio.Queue[tuple[Event, int]]) -> None:
        while True:
            event, attempt = await queue.get()
            try:
                delivery = await self.deliver(event, attempt)
            except Exception:  # the worker must outlive any one delivery
                log.exception("sandbox.webhook_worker_error", event_id=event.id)
                continue
            if not delivery.ok and attempt <= len(self.retry_delays):
                self._schedule_retry(queue, event, attempt + 1, self.retry_delays[attempt - 1])

    def _schedule_retry(
        self, queue: asyncio.Queue[tuple[Event, int]], event: Event, attempt: int, delay: float
    ) -> None:
        async def retry() -> None:
            await asyncio.sleep(delay)
            queue.put_nowait((event, attempt))

        task = asyncio.create_task(retry())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def _record(
        self, event: Event, attempt: int, status: int | None, error: str | None, duration_ms: float
    ) -> Delivery:
        delivery = Delivery(
            event_id=event.id,
            event_type=event.type,
            attempt=attempt,
            at=self._clock(),
            status=status,
            error=error,
            duration_ms=round(duration_ms, 2),
        )
        self.deliveries.append(delivery)
        log.info(
            "sandbox.webhook_delivery",
            event_id=event.id,
            event_type=event.type,
            attempt=attempt,
            status=status,
            error=error,
        )
        return delivery
