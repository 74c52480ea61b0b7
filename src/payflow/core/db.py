"""The database: engine set-up for PostgreSQL and SQLite, and the one place transactions are run.

Every write goes through `Database.transaction`, every read through `Database.read`. A write is a
coroutine taking a `UnitOfWork` (core/unit_of_work.py: the connection, after-commit hooks and the
idempotency guard); it is begun here, committed here, and re-run here — with a new unit of work —
when the database reports a conflict (core/db_failures.py), so no caller ever sees one. A response
can only be built from the value it returns, that is after the commit.

Reads that need no snapshot run in autocommit on PostgreSQL (one round trip per statement).
PostgreSQL runs at READ COMMITTED: money statements are single conditional UPDATEs that take the row
lock and re-check their condition on the newest row version, so no lost update is possible.
SQLite has one writer at a time: write transactions start with `BEGIN IMMEDIATE`, which takes the
write lock up front (waiting up to the busy timeout), so two writers never interleave and never
deadlock on a lock upgrade. Readers run in WAL mode beside the writer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from payflow.config import Settings
from payflow.core.db_failures import Failure, RetryBudget, classify, is_conflict
from payflow.core.driver import DriverPool
from payflow.core.errors import ServiceUnavailable
from payflow.core.unit_of_work import IdempotencyGuard, UnitOfWork

T = TypeVar("T")
Work = Callable[[UnitOfWork], Awaitable[T]]
ReadWork = Callable[[AsyncConnection], Awaitable[T]]

log = structlog.get_logger("payflow.db")

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE = "payflow_write"


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.async_database_url
        self.is_sqlite = settings.is_sqlite
        self.is_postgres = not settings.is_sqlite
        self.engine = self._create_engine(settings)
        # PostgreSQL: the hottest fixed statements skip SQLAlchemy (core/driver.py).
        self.driver = (
            DriverPool(self.url, settings.db_pool_size, "payflow") if self.is_postgres else None
        )

    def _create_engine(self, settings: Settings) -> AsyncEngine:
        if not self.is_sqlite:
            return create_async_engine(
                self.url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_recycle=1800,
                connect_args={"server_settings": {"application_name": "payflow"}},
            )
        database = self.url.split("///", 1)[1].split("?", 1)[0]
        if database not in ("", ":memory:"):
            # Best effort: if the folder cannot be made, connecting fails later as "unavailable".
            with contextlib.suppress(OSError):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            self.url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine

    async def transaction(self, work: Work[T], *, idempotency: IdempotencyGuard | None = None) -> T:
        """Run `work` in a write transaction, committed before this returns; re-run on conflicts.
        Each attempt gets a new `UnitOfWork`; its after-commit hooks run once the commit stood."""
        result, uow = await self._run(
            lambda conn: self._attempt(conn, work, idempotency), write=True
        )
        await uow.run_after_commit()
        return result

    async def read(self, work: ReadWork[T], *, snapshot: bool = False) -> T:
        """Run `work`, which only reads. Never takes SQLite's write lock. On PostgreSQL each
        statement runs on its own (autocommit: no BEGIN/COMMIT round trips) unless `snapshot`
        asks for one transaction around them all (several reads that must agree)."""
        autocommit = not snapshot and not self.is_sqlite
        return await self._run(work, write=False, autocommit=autocommit)

    async def _run(self, work: ReadWork[T], *, write: bool, autocommit: bool = False) -> T:
        budget = RetryBudget()
        while True:
            try:
                if autocommit:
                    return await self._autocommit(work)
                return await self._in_transaction(work, write=write)
            except _CommitOutcomeUnknown as unknown:
                raise ServiceUnavailable("the database connection was lost") from unknown.__cause__
            except (DBAPIError, TimeoutError, OSError) as exc:
                failure = classify(exc)
                if failure is Failure.CONFLICT and await budget.after_conflict():
                    continue
                if failure is Failure.DISCONNECT and await budget.after_disconnect():
                    continue
                if failure is Failure.OTHER:
                    raise
                log.warning("db.unavailable", error=type(exc).__name__, conflicts=budget.conflicts)
                raise ServiceUnavailable("the database is busy or unreachable") from exc

    async def _attempt(
        self, conn: AsyncConnection, work: Work[T], idempotency: IdempotencyGuard | None
    ) -> tuple[T, UnitOfWork]:
        uow = UnitOfWork(conn, idempotency)
        if idempotency is not None:
            await idempotency.enter(conn)
        result = await work(uow)
        if idempotency is not None:
            await idempotency.leave(conn, result)
        return result, uow

    async def _in_transaction(self, work: ReadWork[T], *, write: bool) -> T:
        async with self.engine.connect() as conn:
            if write and self.is_sqlite:
                conn = await conn.execution_options(**{_WRITE: True})
            tx = await conn.begin()
            try:
                result = await work(conn)
            except BaseException:
                if tx.is_active:
                    await tx.rollback()
                raise
            try:
                await tx.commit()
            except DBAPIError as exc:
                # A conflict reported at commit means nothing was committed: safe to re-run.
                # A lost connection during commit leaves the outcome unknown: never re-run.
                if is_conflict(exc):
                    raise
                raise _CommitOutcomeUnknown from exc
            return result

    async def _autocommit(self, work: ReadWork[T]) -> T:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await work(conn)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        if self.driver is not None:
            await self.driver.close()
        await self.engine.dispose()


class _CommitOutcomeUnknown(Exception):
    pass


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event, not the driver, decide how a transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(conn: SyncConnection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
