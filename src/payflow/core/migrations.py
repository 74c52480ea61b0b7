"""Applying payflow's Alembic migrations (shipped inside the package) to the configured database.

Migrations run under a lock, because several processes may migrate one database at once (parallel
`payflow migrate`, `payflow serve` on several hosts starting together): unlocked, they would all
see an empty schema and create the same tables. With the lock they take turns; the first applies
what is pending and each one after it reads the version again and finds nothing left to do.
- PostgreSQL: a session-level advisory lock, taken in migrations/env.py on the very connection
  Alembic migrates with (held across its transaction; released by unlocking, or by the session
  ending if the process dies).
- SQLite: the database is a file on this machine, so an exclusive `flock` on a file beside it
  (`<database>-migrate.lock`, named like SQLite's own -journal and -wal files; left in place:
  removing it would let two processes lock two different files). Only processes on this machine
  are serialized, which is all SQLite supports anyway. An in-memory database belongs to one
  process and needs no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from payflow.config import Settings

# pg_advisory_lock's key (a bigint), the same in every payflow process and version.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"payflow.migrations").digest()[:8], "big", signed=True
)
LOCK_SUFFIX = "-migrate.lock"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("payflow") / "migrations"))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["database_url"] = settings.async_database_url
    return config


def sqlite_lock_path(database_url: str) -> Path | None:
    """The lock file of a SQLite database file; None for other databases and in-memory ones."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database.startswith("file:"):  # a URI filename (`?uri=true`)
        database = database.removeprefix("file:").partition("?")[0]
        if url.query.get("mode") == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    # Resolved as SQLite resolves it: relative to the working directory.
    path = Path(database).resolve()
    return path.with_name(path.name + LOCK_SUFFIX)


@contextlib.contextmanager
def sqlite_file_lock(database_url: str) -> Iterator[None]:
    """Hold the exclusive lock of a SQLite database file (waiting for it); no-op otherwise."""
    path = sqlite_lock_path(database_url)
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision`. Must be called outside a running event loop."""
    with sqlite_file_lock(settings.async_database_url):
        command.upgrade(alembic_config(settings), revision)
