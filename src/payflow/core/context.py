"""The application context: the long-lived resources every request may use, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from payflow.config import Settings
from payflow.core.cache import Cache, create_cache
from payflow.core.db import Database
from payflow.core.gate import KeyedGate
from payflow.core.metrics import Metrics
from payflow.core.ratelimit import RateLimiter, create_rate_limiter
from payflow.core.security import PasswordHasher, TokenService
from payflow.payments.gateway import StripeGateway
from payflow.payments.setup import gateway_for
from payflow.sandbox import SandboxConfig


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
