"""Alembic environment: runs payflow's migrations on the configured database (async drivers)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from payflow.core.migrations import MIGRATION_LOCK_KEY
from payflow.migrations.model_registry import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # What autogenerate (`alembic check`, tests/core/test_alembic_check.py) compares besides
        # tables, columns, indexes and unique constraints: column types and server defaults.
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migration_lock(connection: AsyncConnection, *, take: bool) -> None:
    """Take (waiting for it) or release payflow's migration lock on PostgreSQL; SQLite's is a
    file lock taken around the whole upgrade (core/migrations.py)."""
    if connection.dialect.name == "postgresql":
        function = sa.func.pg_advisory_lock if take else sa.func.pg_advisory_unlock
        await connection.execute(sa.select(function(MIGRATION_LOCK_KEY)))
        # The lock belongs to the session, not to this transaction: ending it keeps the lock and
        # leaves Alembic to begin (and commit) its own transaction, which reads the version
        # only now that this process has its turn.
        await connection.commit()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await _migration_lock(connection, take=True)
            await connection.run_sync(_run)
            await connection.commit()
            # If anything above fails, engine.dispose() closes the session, which unlocks.
            await _migration_lock(connection, take=False)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    url = config.attributes["database_url"]
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async(url))


if context.is_offline_mode():  # pragma: no cover - payflow always migrates online
    raise SystemExit("offline migrations are not supported")
run_migrations_online()
