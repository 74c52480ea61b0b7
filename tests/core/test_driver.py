"""core/driver.py: the DSN handed to asyncpg is the configured database, TLS setting included."""

from __future__ import annotations

from payflow.core.driver import driver_dsn


def test_the_dsn_is_the_configured_database() -> None:
    assert (
        driver_dsn("postgresql+asyncpg://app:s3cret@db.internal:6432/payflow")
        == "postgresql://app:s3cret@db.internal:6432/payflow"
    )


def test_sqlalchemy_ssl_becomes_sslmode() -> None:
    assert (
        driver_dsn("postgresql+asyncpg://app@db/payflow?ssl=require")
        == "postgresql://app@db/payflow?sslmode=require"
    )
    assert driver_dsn("postgresql+asyncpg://app@db/payflow?sslmode=verify-full") == (
        "postgresql://app@db/payflow?sslmode=verify-full"
    )
