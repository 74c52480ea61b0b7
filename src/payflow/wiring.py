"""The composition root's resources: the `AppContext` every request may use, built once per app,
and the choice of payment gateway — real Stripe, or the built-in sandbox.

With STRIPE_SECRET_KEY set, payflow talks to Stripe (or to STRIPE_API_BASE). Without it, payflow
serves the payments sandbox itself under /sandbox and talks to it through the same SDK code path,
signing and verifying webhooks with STRIPE_WEBHOOK_SECRET or a secret made at start. The sandbox
accepts only the API key made for it at start (which payflow alone holds) and redirects browsers
only under PUBLIC_URL. The sandbox is reached only over HTTP, like Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request

from payflow.config import Settings
from payflow.core.cache import Cache, create_cache
from payflow.core.db import Database
from payflow.core.gate import KeyedGate
from payflow.core.metrics import Metrics
from payflow.core.ratelimit import RateLimiter, create_rate_limiter
from payflow.core.security import PasswordHasher, TokenService
from payflow.paths import SANDBOX_PREFIX, WEBHOOK_PATH
from payflow.payments.gateway import StripeGateway, webhook_secrets
from payflow.sandbox import SandboxConfig
from payflow.sandbox.config import new_webhook_secret


def gateway_for(settings: Settings) -> tuple[StripeGateway, SandboxConfig | None]:
    if settings.stripe_secret_key:
        gateway = StripeGateway(
            settings.stripe_secret_key,
            settings.stripe_api_base or None,
            settings.stripe_webhook_secret or "",
        )
        return gateway, None
    public = settings.public_url.rstrip("/")
    configured = webhook_secrets(settings.stripe_webhook_secret or "")
    sandbox = SandboxConfig(
        webhook_url=public + WEBHOOK_PATH,
        public_base=public + SANDBOX_PREFIX,
        # The sandbox signs as Stripe does after a rotation: with the newest secret (the first).
        webhook_secret=configured[0] if configured else new_webhook_secret(),
        redirect_base=public,
    )
    api_base = settings.stripe_api_base or sandbox.public_base
    verifying = settings.stripe_webhook_secret or sandbox.webhook_secret
    return StripeGateway(sandbox.api_key, api_base, verifying), sandbox


@dataclass(slots=True)
class AppContext:
    settings: Settings
    db: Database
    cache: Cache
    rate_limiter: RateLimiter
    metrics: Metrics
    passwords: PasswordHasher
    tokens: TokenService
    gateway: StripeGateway
    # Set when this app serves the payments sandbox itself (no STRIPE_SECRET_KEY).
    sandbox: SandboxConfig | None
    # At most this many purchases per product in flight per process (core/gate.py).
    purchase_gate: KeyedGate

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        gateway, sandbox = gateway_for(settings)
        return cls(
            settings=settings,
            db=Database(settings),
            cache=create_cache(
                settings.redis_url, settings.redis_key_prefix, in_process=settings.in_process_cache
            ),
            rate_limiter=create_rate_limiter(settings.redis_url, settings.redis_key_prefix),
            metrics=Metrics(),
            passwords=PasswordHasher(settings.bcrypt_rounds),
            tokens=TokenService(settings),
            gateway=gateway,
            sandbox=sandbox,
            purchase_gate=KeyedGate(settings.purchases_in_flight_per_product),
        )

    async def close(self) -> None:
        await self.gateway.aclose()
        await self.cache.close()
        await self.rate_limiter.close()
        await self.db.dispose()


async def get_context(request: Request) -> AppContext:
    return cast(AppContext, request.app.state.context)


ContextDep = Annotated[AppContext, Depends(get_context)]
