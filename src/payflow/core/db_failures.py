"""One policy for database failures, shared by SQLAlchemy (`core/db.py`) and raw asyncpg
(`core/driver.py`): what a failure means, whether the work may simply run again, and how long to
wait first.

- A **conflict** (serialization failure, deadlock, lock timeout; SQLite's "database is locked")
  means nothing was committed: re-running the whole unit of work is safe and expected to succeed.
- A **disconnect** (the server or the connection went away, or could not be reached) before a
  write was sent is safe to retry; while a write's commit was in flight its outcome is unknown and
  it is never re-run (503, and the client retries with its idempotency key).
- Anything else is not the database's doing and goes to the caller.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass

import asyncpg
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError

# PostgreSQL SQLSTATEs after which re-running the whole transaction is safe and expected to succeed.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# SQLSTATE classes about the connection itself: connection exception, operator intervention.
DISCONNECT_CLASSES = frozenset({"08", "57"})
MAX_CONFLICT_ATTEMPTS = 12
MAX_RECONNECT_ATTEMPTS = 3


class Failure(enum.Enum):
    CONFLICT = "conflict"
    DISCONNECT = "disconnect"
    OTHER = "other"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, whether raised by asyncpg or wrapped by SQLAlchemy."""
    candidates: list[object] = [exc]
    if isinstance(exc, DBAPIError):
        candidates += [exc.orig, getattr(exc.orig, "__cause__", None)]
    for candidate in candidates:
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _sqlite_message(exc: DBAPIError) -> str:
    return str(exc.orig).lower()


def classify(exc: BaseException) -> Failure:
    state = sqlstate(exc)
    if state is not None:
        if state in RETRYABLE_SQLSTATES and not isinstance(exc, IntegrityError):
            return Failure.CONFLICT
        if state[:2] in DISCONNECT_CLASSES:
            return Failure.DISCONNECT
    if isinstance(exc, DBAPIError):
        if isinstance(exc, IntegrityError):
            return Failure.OTHER
        message = _sqlite_message(exc)
        if "database is locked" in message or "database table is locked" in message:
            return Failure.CONFLICT
        if exc.connection_invalidated or isinstance(exc.orig, OSError):
            return Failure.DISCONNECT
        if isinstance(exc.__cause__, OSError):
            return Failure.DISCONNECT
        if "unable to open database" in message or "disk i/o error" in message:
            return Failure.DISCONNECT
        return Failure.OTHER
    if isinstance(exc, OSError | DisconnectionError | asyncio.TimeoutError):
        return Failure.DISCONNECT
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return Failure.DISCONNECT  # asyncpg's client side lost or confused the connection
    return Failure.OTHER


def is_conflict(exc: BaseException) -> bool:
    return classify(exc) is Failure.CONFLICT


def is_disconnect(exc: BaseException) -> bool:
    return classify(exc) is Failure.DISCONNECT


@dataclass(slots=True)
class RetryBudget:
    """How many times one unit of work may still be re-run, and the wait before each re-run."""

    conflicts: int = 0
    reconnects: int = 0

    async def after_conflict(self) -> bool:
        """Wait (jittered, exponential) and say True if another attempt is allowed."""
        if self.conflicts >= MAX_CONFLICT_ATTEMPTS:
            return False
        self.conflicts += 1
        await asyncio.sleep(random.uniform(0, 0.002 * 2 ** min(self.conflicts, 6)))  # noqa: S311
        return True

    async def after_disconnect(self) -> bool:
        """Wait (linear) and say True if another attempt is allowed."""
        if self.reconnects >= MAX_RECONNECT_ATTEMPTS:
            return False
        self.reconnects += 1
        await asyncio.sleep(0.05 * self.reconnects)
        return True
