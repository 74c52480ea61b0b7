"""payflow's configuration: one Settings class read from the environment (and `.env`).

Nothing set means the embedded default: a SQLite file, an in-process cache and the payments sandbox.
`ENVIRONMENT=production` refuses to start on anything that is only fit for development.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from payflow.core.ratelimit import RateLimit

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./payflow.db"
DEV_ACCESS_SECRET = "dev-access-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_REFRESH_SECRET = "dev-refresh-secret-change-me-0123456789abcdef"  # noqa: S105
MIN_SECRET_LENGTH = 32
MIN_BCRYPT_ROUNDS = 12


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(ValueError):
    """The configuration cannot be used to start payflow."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Every Redis key starts with this; lets several deployments (or tests) share one Redis.
    redis_key_prefix: str = "payflow:"
    # Without Redis, cache in this process. Must be false when several processes share the
    # database without Redis (each would serve its own stale copies); `serve --workers N` sets it.
    in_process_cache: bool = True
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    # Purchases of one product in flight at once per process; the others queue in the process
    # instead of on the product's row lock (core/gate.py).
    purchases_in_flight_per_product: int = Field(default=4, ge=1, le=1000)

    jwt_access_secret: str = DEV_ACCESS_SECRET
    jwt_refresh_secret: str = DEV_REFRESH_SECRET
    jwt_access_ttl: int = Field(default=900, ge=30)
    jwt_refresh_ttl: int = Field(default=604800, ge=60)
    jwt_issuer: str = "payflow"
    jwt_audience: str = "payflow-api"
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)

    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    # Real Stripe needs 1800..86400; the sandbox accepts shorter ones for tests and demos.
    checkout_ttl_seconds: int = Field(default=1800, ge=60, le=86400)
    # How often each server releases expired reservations and retries pending refunds.
    sweeper_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    # Caps on what one buyer may hold reserved at once through open (PENDING or
    # PAYMENT_PROCESSING) gateway orders, over all products: an unpaid checkout costs nothing, so
    # without them one buyer could take a product off sale (orders/reservation_cap.py).
    max_open_reservations_per_buyer: int = Field(default=10, ge=1, le=100_000)
    max_reserved_units_per_buyer: int = Field(default=100, ge=1, le=10_000_000)
    # Backoff of a refund the gateway failed to make: base, doubling per attempt, up to max.
    refund_retry_base_seconds: float = Field(default=30.0, gt=0, le=86400)
    refund_retry_max_seconds: float = Field(default=3600.0, gt=0, le=86400)

    # Seconds an idle keep-alive connection stays open: longer than the idle timeouts of common
    # clients and load balancers (60 s), so the server never closes one a client is reusing.
    http_keepalive_timeout: int = Field(default=75, ge=1, le=3600)
    # On SIGTERM, seconds in-flight requests get to finish before the worker stops.
    shutdown_grace_seconds: int = Field(default=30, ge=1, le=600)

    # When set, GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: str | None = None
    # The interactive API docs (/docs, Swagger UI); the OpenAPI document stays available.
    docs_enabled: bool = True

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    log_dir: str = "./logs"
    rate_limits_enabled: bool = True
    # Each "<count>/<seconds>": at most count attempts per window (core/ratelimit.py).
    rate_limit_login_per_account: Annotated[RateLimit, NoDecode] = RateLimit(10, 60)
    rate_limit_login_per_address: Annotated[RateLimit, NoDecode] = RateLimit(300, 60)
    rate_limit_register_per_account: Annotated[RateLimit, NoDecode] = RateLimit(5, 3600)
    rate_limit_register_per_address: Annotated[RateLimit, NoDecode] = RateLimit(300, 3600)
    rate_limit_orders_per_user: Annotated[RateLimit, NoDecode] = RateLimit(120, 60)
    rate_limit_withdrawals_per_user: Annotated[RateLimit, NoDecode] = RateLimit(60, 60)
    rate_limit_deposits_per_user: Annotated[RateLimit, NoDecode] = RateLimit(60, 60)
    rate_limit_refunds_per_user: Annotated[RateLimit, NoDecode] = RateLimit(60, 60)
    rate_limit_product_writes_per_user: Annotated[RateLimit, NoDecode] = RateLimit(120, 60)
    rate_limit_refresh_per_address: Annotated[RateLimit, NoDecode] = RateLimit(300, 60)
    # Peers (IPs or CIDRs) whose X-Forwarded-For is believed; empty = the socket peer is the client.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, raw: object) -> object:
        if isinstance(raw, str):
            return [origin.strip() for origin in raw.split(",") if origin.strip()]
        return raw

    @field_validator(
        "rate_limit_login_per_account",
        "rate_limit_login_per_address",
        "rate_limit_register_per_account",
        "rate_limit_register_per_address",
        "rate_limit_orders_per_user",
        "rate_limit_withdrawals_per_user",
        "rate_limit_deposits_per_user",
        "rate_limit_refunds_per_user",
        "rate_limit_product_writes_per_user",
        "rate_limit_refresh_per_address",
        mode="before",
    )
    @classmethod
    def _parse_rate_limit(cls, raw: object) -> object:
        return RateLimit.parse(raw) if isinstance(raw, str) else raw

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, raw: object) -> object:
        if isinstance(raw, str):
            return [proxy.strip() for proxy in raw.split(",") if proxy.strip()]
        return raw

    @model_validator(mode="after")
    def _check(self) -> Settings:
        url = self.async_database_url
        if not url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
            scheme = self.database_url.split(":", 1)[0] or "(none)"
            raise ConfigurationError(
                f"DATABASE_URL: unsupported scheme {scheme!r}; use postgresql://user@host/db "
                "or sqlite:///path/to/payflow.db"
            )
        if self.bcrypt_rounds < MIN_BCRYPT_ROUNDS and self.environment != Environment.TEST:
            raise ConfigurationError(
                f"BCRYPT_ROUNDS below {MIN_BCRYPT_ROUNDS} is accepted only when ENVIRONMENT=test"
            )
        if self.environment == Environment.PRODUCTION:
            self._check_production()
        return self

    def _check_production(self) -> None:
        problems: list[str] = []
        secrets = {
            "JWT_ACCESS_SECRET": (self.jwt_access_secret, DEV_ACCESS_SECRET),
            "JWT_REFRESH_SECRET": (self.jwt_refresh_secret, DEV_REFRESH_SECRET),
        }
        for name, (value, default) in secrets.items():
            if value == default or len(value) < MIN_SECRET_LENGTH:
                problems.append(
                    f"{name} must be set to a secret of at least {MIN_SECRET_LENGTH} chars"
                )
        if self.jwt_access_secret == self.jwt_refresh_secret:
            problems.append("JWT_ACCESS_SECRET and JWT_REFRESH_SECRET must differ")
        if not self.stripe_secret_key:
            problems.append(
                "STRIPE_SECRET_KEY must be set (the payments sandbox is not for production)"
            )
        if not (self.stripe_webhook_secret or "").strip(" ,"):
            problems.append(
                "STRIPE_WEBHOOK_SECRET must be set (two, comma-separated, during a rotation)"
            )
        if self.database_url == DEFAULT_DATABASE_URL:
            problems.append("DATABASE_URL must point at PostgreSQL in production")
        if problems:
            raise ConfigurationError("refusing to start in production: " + "; ".join(problems))

    @property
    def async_database_url(self) -> str:
        """The URL with an async driver, whatever form the operator wrote it in."""
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.async_database_url.startswith("sqlite")
