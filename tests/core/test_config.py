"""Configuration (README): embedded default, PostgreSQL + Redis when set, production refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from payflow.config import Settings

GOOD_PRODUCTION = {
    "ENVIRONMENT": "production",
    "DATABASE_URL": "postgresql://payflow@db.internal/payflow",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "JWT_ACCESS_SECRET": "a" * 48,
    "JWT_REFRESH_SECRET": "b" * 48,
    "STRIPE_SECRET_KEY": "sk_live_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_example",
}
ALL_VARIABLES = [
    "DATABASE_URL",
    "REDIS_URL",
    "ENVIRONMENT",
    "JWT_ACCESS_SECRET",
    "JWT_REFRESH_SECRET",
    "JWT_ACCESS_TTL",
    "JWT_REFRESH_TTL",
    "BCRYPT_ROUNDS",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "PUBLIC_URL",
    "CORS_ORIGINS",
    "LOG_LEVEL",
    "LOG_DIR",
    "CHECKOUT_TTL_SECONDS",
    "RATE_LIMITS_ENABLED",
    "RATE_LIMIT_LOGIN_PER_ACCOUNT",
    "RATE_LIMIT_LOGIN_PER_ADDRESS",
    "RATE_LIMIT_REGISTER_PER_ACCOUNT",
    "RATE_LIMIT_REGISTER_PER_ADDRESS",
    "RATE_LIMIT_ORDERS_PER_USER",
    "RATE_LIMIT_WITHDRAWALS_PER_USER",
    "TRUSTED_PROXIES",
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_nothing_set_means_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch)
    assert settings.async_database_url == "sqlite+aiosqlite:///./payflow.db"
    assert settings.is_sqlite
    assert settings.redis_url is None
    assert settings.stripe_secret_key is None  # the payments sandbox
    assert (settings.jwt_access_ttl, settings.jwt_refresh_ttl) == (900, 604800)
    assert settings.checkout_ttl_seconds == 1800
    assert settings.rate_limits_enabled is True


def test_postgres_and_redis_urls_are_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch, DATABASE_URL="postgresql://u@h/db", REDIS_URL="redis://h:6379/1"
    )
    assert settings.async_database_url == "postgresql+asyncpg://u@h/db"
    assert not settings.is_sqlite
    assert settings.redis_url == "redis://h:6379/1"


def test_a_complete_production_configuration_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, **GOOD_PRODUCTION)
    assert settings.environment == "production"


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("JWT_ACCESS_SECRET", "JWT_ACCESS_SECRET"),
        ("JWT_REFRESH_SECRET", "JWT_REFRESH_SECRET"),
        ("STRIPE_SECRET_KEY", "STRIPE_SECRET_KEY"),
        ("STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET"),
        ("DATABASE_URL", "DATABASE_URL"),
    ],
)
def test_production_refuses_missing_or_default_values(
    monkeypatch: pytest.MonkeyPatch, missing: str, named: str
) -> None:
    env = {k: v for k, v in GOOD_PRODUCTION.items() if k != missing}
    with pytest.raises(ValidationError, match=named):
        _settings(monkeypatch, **env)


def test_production_refuses_short_or_shared_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="JWT_ACCESS_SECRET"):
        _settings(monkeypatch, **{**GOOD_PRODUCTION, "JWT_ACCESS_SECRET": "short"})
    with pytest.raises(ValidationError, match="must differ"):
        _settings(monkeypatch, **{**GOOD_PRODUCTION, "JWT_REFRESH_SECRET": "a" * 48})


def test_low_bcrypt_cost_only_in_test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="BCRYPT_ROUNDS"):
        _settings(monkeypatch, BCRYPT_ROUNDS="4")
    assert _settings(monkeypatch, BCRYPT_ROUNDS="4", ENVIRONMENT="test").bcrypt_rounds == 4


def test_env_example_lists_every_variable() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    names = {
        line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line
    }
    assert set(ALL_VARIABLES) <= names
