"""Effects: what a committed order transaction changed, applied only after its commit.

A unit of work calls `begin()` first (it may be re-run after a conflict), records what it changes,
and calls `end()` as its last step; `apply()` after the transaction then refreshes the wallet and
product caches, counts and logs the order transitions, and sends the refunds decided in it. An
attempt that raised never reached `end()`, so what it recorded (rolled back) is never applied.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import structlog

from payflow.core.context import AppContext
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.products import cache as product_cache
from payflow.wallets import service as wallets_service
from payflow.wallets.records import Wallet

log = structlog.get_logger("payflow.orders")


@dataclass(slots=True)
class Effects:
    wallets: list[Wallet] = field(default_factory=list)
    products: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    refunds: list[uuid.UUID] = field(default_factory=list)
    transitions: list[tuple[uuid.UUID, OrderStatus, PaymentMethod]] = field(default_factory=list)
    ended: bool = False

    def begin(self) -> None:
        self.wallets.clear()
        self.products.clear()
        self.refunds.clear()
        self.transitions.clear()
        self.ended = False

    def end(self) -> None:
        self.ended = True

    async def apply(self, ctx: AppContext) -> None:
        """Call after the transaction: applies only what its last, committed attempt recorded."""
        if not self.ended:
            return
        self.ended = False
        tombstones, deleted = product_cache.invalidation(self.products)
        await ctx.cache.update([*wallets_service.cache_entries(self.wallets), *tombstones], deleted)
        for order_id, status, method in self.transitions:
            ctx.metrics.orders.labels(status.value, method.value).inc()
            log.info(
                "order.transition", order_id=str(order_id), status=status.value, method=method.value
            )
        if self.refunds:
            # Imported here: the refund outbox belongs to payments, which builds on orders.
            from payflow.payments.refunds import send_pending_refunds

            await send_pending_refunds(ctx, list(self.refunds))
