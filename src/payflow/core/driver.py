"""Fixed statements straight on asyncpg, for the few hottest ones (PostgreSQL only).

SQLAlchemy's async layer costs ≈ 0.5 ms of CPU per statement on this stack (a pooled
`AsyncConnection`, the greenlet bridge, the DBAPI adapter), ten times what asyncpg itself costs.
That is most of a request when the request is one statement. The statements run here are fixed
texts (prepared once per connection by asyncpg), each a whole unit of work on its own
(autocommit: a single statement is atomic), so no transaction ever spans this pool and nothing
has to be reset between uses. Everything else keeps using `Database` and SQLAlchemy.

Failures follow the one policy `Database` follows (core/db_failures.py): a conflict (serialization failure, deadlock,
lock timeout) re-runs the statement; a connection that cannot be had is retried, then 503; a
connection lost while a write statement ran leaves its outcome unknown: 503, never re-run.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import make_url

from payflow.core.db_failures import Failure, RetryBudget, classify
from payflow.core.errors import ServiceUnavailable

log = structlog.get_logger("payflow.db")


def _refused_before_sending(exc: BaseException) -> bool:
    """The pool handed out a connection whose client had lost track of it (seen under
    pg_terminate_backend): asyncpg refuses to start the statement before sending a byte, so even
    a write is safe to try again on another connection. Only that message says "before sending"."""
    return isinstance(exc, asyncpg.InternalClientError) and "cannot switch to state" in str(exc)


async def _no_session_state(_conn: asyncpg.Connection) -> None:
    """Nothing to reset: statements here leave no session state (asyncpg still rolls back an open
    transaction first, and there never is one)."""


def driver_dsn(sqlalchemy_url: str) -> str:
    """The libpq-style DSN asyncpg takes, from the URL SQLAlchemy's asyncpg dialect takes (which
    spells TLS `ssl=`, where a DSN says `sslmode=`)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    ssl = url.query.get("ssl")
    if ssl is not None and "sslmode" not in url.query:
        url = url.difference_update_query(["ssl"]).update_query_dict({"sslmode": ssl})
    return url.render_as_string(hide_password=False)


class DriverPool:
    def __init__(self, sqlalchemy_url: str, size: int, application_name: str) -> None:
        self._dsn = driver_dsn(sqlalchemy_url)
        self._size = size
        self._application_name = application_name
        self._pool: asyncpg.Pool | None = None
        self._creating: asyncio.Lock | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._creating is None:
            self._creating = asyncio.Lock()
        async with self._creating:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._size,
                    reset=_no_session_state,
                    max_inactive_connection_lifetime=300,
                    server_settings={"application_name": self._application_name},
                )
        return self._pool

    async def fetch(self, sql: str, *args: Any, write: bool) -> list[asyncpg.Record]:
        """Run one statement on its own and return its rows. `write` says whether it changes
        anything (then a connection lost while it ran is never re-run)."""
        budget = RetryBudget()
        while True:
            try:
                pool = await self._get_pool()
                connection = await pool.acquire()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Nothing was sent: safe to try again, then give up as unavailable.
                if await budget.after_disconnect():
                    continue
                raise ServiceUnavailable("the database is unreachable") from exc
            failure: Exception
            sound = False  # whether the connection can go back to the pool as it is
            try:
                rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
                sound = True
                return rows
            except asyncpg.PostgresError as exc:
                # The server answered with an error: the connection is fine unless it was about
                # the connection itself (the backend terminated, say).
                sound = classify(exc) is not Failure.DISCONNECT
                failure = exc
            except (
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
                OSError,
                TimeoutError,
            ) as exc:
                failure = exc
            finally:
                # A connection whose statement did not finish cleanly (lost, cancelled, confused)
                # is closed, never handed to the next caller in an unknown protocol state.
                # (A lost connection may already have been taken back by the pool: both steps
                # are then no-ops that raise, and what matters is the statement's own failure.)
                with contextlib.suppress(Exception):
                    if not sound:
                        connection.terminate()
                    await pool.release(connection)
            kind = classify(failure)
            if _refused_before_sending(failure) and await budget.after_disconnect():
                continue
            if kind is Failure.CONFLICT and await budget.after_conflict():
                continue
            if kind is Failure.DISCONNECT:
                # Only a read is re-run: a write's outcome is unknown once its connection is lost.
                if not write and await budget.after_disconnect():
                    continue
                log.warning("db.unavailable", error=type(failure).__name__, write=write)
                raise ServiceUnavailable("the database connection was lost") from failure
            if kind is Failure.CONFLICT:
                raise ServiceUnavailable("the database is busy") from failure
            raise failure

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
