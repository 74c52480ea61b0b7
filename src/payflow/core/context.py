"""The application context: the long-lived resources every request may use, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from payflow.config import Settings
from payflow.core.cache import Cache, create_cache
from payflow.core.db import Database
from payflow.core.metrics import Metrics
from payflow.core.security import PasswordHasher, TokenService


@dataclass(slots=True)
class AppContext:
    settings: Settings
    db: Database
    cache: Cache
    metrics: Metrics
    passwords: PasswordHasher
    tokens: TokenService

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        return cls(
            settings=settings,
            db=Database(settings),
            cache=create_cache(
                settings.redis_url, settings.redis_key_prefix, in_process=settings.in_process_cache
            ),
            metrics=Metrics(),
            passwords=PasswordHasher(settings.bcrypt_rounds),
            tokens=TokenService(settings),
        )

    async def close(self) -> None:
        await self.cache.close()
        await self.db.dispose()
