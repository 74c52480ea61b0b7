"""Effects: what one attempt of an order transaction changed, applied only after its commit.

`Effects.of(ctx, uow)` makes a fresh record for the unit of work's attempt and registers its
`apply` as the unit of work's after-commit hook: an attempt that was rolled back (or re-run after
a conflict) never commits, so what it recorded is never applied. Applying refreshes the wallet and
product caches, counts and logs the order transitions, and sends the refunds decided in it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import structlog

from payflow.core.unit_of_work import UnitOfWork
from payflow.orders import refund_outbox
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.products import cache as product_cache
from payflow.wallets import service as wallets_service
from payflow.wallets.records import Wallet
from payflow.wiring import AppContext

log = structlog.get_logger("payflow.orders")


@dataclass(slots=True)
class Effects:
    ctx: AppContext
    wallets: list[Wallet] = field(default_factory=list)
    products: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    refunds: list[uuid.UUID] = field(default_factory=list)
    transitions: list[tuple[uuid.UUID, OrderStatus, PaymentMethod]] = field(default_factory=list)

    @classmethod
    def of(cls, ctx: AppContext, uow: UnitOfWork) -> Effects:
        effects = cls(ctx)
        uow.after_commit(effects.apply)
        return effects

    async def apply(self) -> None:
        ctx = self.ctx
        tombstones, deleted = product_cache.invalidation(self.products)
        await ctx.cache.update([*wallets_service.cache_entries(self.wallets), *tombstones], deleted)
        for order_id, status, method in self.transitions:
            ctx.metrics.orders.labels(status.value, method.value).inc()
            log.info(
                "order.transition", order_id=str(order_id), status=status.value, method=method.value
            )
        if self.refunds:
            await refund_outbox.send(ctx, list(self.refunds))
