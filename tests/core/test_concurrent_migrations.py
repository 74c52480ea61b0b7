"""`payflow migrate` run by several processes at once on a new database, SQLite and PostgreSQL:
they take turns under the migration lock, every one exits 0, and the schema ends at head.

Real `payflow migrate` processes. So that they race for certain rather than by luck of timing,
the test holds the migration lock itself while they start, waits until all of them are queued
behind it (PostgreSQL's pg_locks; the kernel's /proc/locks for the SQLite file lock), and then
lets them all go at once. Without the lock the processes never queue, and the test fails.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from payflow.config import Settings
from payflow.core.migrations import MIGRATION_LOCK_KEY, alembic_config, sqlite_lock_path
from tests.live_server import clean_env, payflow_command

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgres"] if TEST_DATABASE_URL else [])]
PROCESSES = 3
QUEUE_DEADLINE = 60.0  # seconds for the processes to start and queue behind the lock
RUN_TIMEOUT = 120.0
SCHEMA_TABLES = {"users", "wallets", "orders", "webhook_events", "alembic_version"}


class FreshDatabase(Protocol):
    @property
    def database_url(self) -> str:
        """DATABASE_URL as an operator writes it."""

    async def hold_lock(self) -> None: ...
    async def waiters(self) -> int: ...
    async def release_lock(self) -> None: ...
    async def versions(self) -> list[str]: ...
    async def tables(self) -> set[str]: ...


@dataclass
class SqliteFile:
    path: Path
    _held: IO[str] | None = None

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def _lock_file(self) -> Path:
        lock = sqlite_lock_path(f"sqlite+aiosqlite:///{self.path}")
        assert lock is not None
        return lock

    async def hold_lock(self) -> None:
        self._held = self._lock_file.open("a")
        fcntl.flock(self._held.fileno(), fcntl.LOCK_EX)

    async def waiters(self) -> int:
        return _blocked_on(self._lock_file)

    async def release_lock(self) -> None:
        assert self._held is not None
        self._held.close()  # closing the only descriptor releases the flock
        self._held = None

    async def versions(self) -> list[str]:
        return [str(row[0]) for row in self._query("SELECT version_num FROM alembic_version")]

    async def tables(self) -> set[str]:
        return {str(row[0]) for row in self._query("SELECT name FROM sqlite_master")}

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


@dataclass
class PostgresDatabase:
    url: str  # postgresql://.../name
    _held: asyncpg.Connection | None = field(default=None)

    @property
    def database_url(self) -> str:
        return self.url

    async def hold_lock(self) -> None:
        self._held = await asyncpg.connect(self.url)
        await self._held.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)

    async def waiters(self) -> int:
        return await self._count(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
        )

    async def release_lock(self) -> None:
        assert self._held is not None
        await self._held.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        await self._held.close()
        self._held = None

    async def versions(self) -> list[str]:
        conn = await asyncpg.connect(self.url)
        try:
            rows = await conn.fetch("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()
        return [str(row["version_num"]) for row in rows]

    async def tables(self) -> set[str]:
        conn = await asyncpg.connect(self.url)
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        finally:
            await conn.close()
        return {str(row["table_name"]) for row in rows}

    async def _count(self, sql: str) -> int:
        conn = await asyncpg.connect(self.url)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()


def _blocked_on(lock_file: Path) -> int:
    """Processes waiting for a flock on the file: the kernel lists each in /proc/locks as a
    "->" line naming the file's inode."""
    inode = f":{lock_file.stat().st_ino} "
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and inode in line)


def _plain_pg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
async def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FreshDatabase]:
    """A database nobody has migrated yet."""
    if request.param == "sqlite":
        yield SqliteFile(tmp_path / "fresh.db")
        return
    assert TEST_DATABASE_URL is not None
    admin_url = _plain_pg_url(TEST_DATABASE_URL)
    name = f"pf_migrate_{uuid.uuid4().hex[:12]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield PostgresDatabase(f"{admin_url.rpartition('/')[0]}/{name}")
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _head() -> str:
    settings = Settings(_env_file=None, environment="test", bcrypt_rounds=4)
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    assert head is not None
    return head


async def _migrate(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *payflow_command(),
        "migrate",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _wait_until_queued(
    database: FreshDatabase, processes: list[asyncio.subprocess.Process]
) -> None:
    deadline = time.monotonic() + QUEUE_DEADLINE
    while (queued := await database.waiters()) < len(processes):
        exited = [p.returncode for p in processes if p.returncode is not None]
        assert not exited, f"a migration did not wait for the lock held by another (exit {exited})"
        assert time.monotonic() < deadline, f"only {queued} of {len(processes)} migrations queued"
        await asyncio.sleep(0.05)


async def test_parallel_migrations_of_a_new_database_take_turns_and_all_succeed(
    fresh: FreshDatabase, tmp_path: Path
) -> None:
    env = clean_env(
        ENVIRONMENT="development",
        DATABASE_URL=fresh.database_url,
        LOG_DIR=str(tmp_path / "logs"),
    )
    processes: list[asyncio.subprocess.Process] = []
    try:
        await fresh.hold_lock()
        try:
            for _ in range(PROCESSES):
                processes.append(await _migrate(env, tmp_path))
            await _wait_until_queued(fresh, processes)
        finally:
            await fresh.release_lock()

        # All of them go at once; each applies what is pending when its turn comes.
        results = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in processes)), RUN_TIMEOUT
        )
    finally:
        for process in processes:  # only after a failure are any still running
            if process.returncode is None:
                process.kill()
                await process.wait()

    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode(errors="replace")[-4000:]
        assert b"database is up to date" in stdout
    assert await fresh.versions() == [_head()]
    assert await fresh.tables() >= SCHEMA_TABLES


@pytest.mark.parametrize(
    ("url", "lock"),
    [
        ("sqlite+aiosqlite:///./data/shop.db", "data/shop.db-migrate.lock"),
        ("sqlite+aiosqlite:///shop.db", "shop.db-migrate.lock"),
        ("sqlite+aiosqlite:///file:shop.db?uri=true", "shop.db-migrate.lock"),
        ("sqlite+aiosqlite://", None),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite:///file:shop?mode=memory&cache=shared&uri=true", None),
        ("postgresql+asyncpg://postgres@127.0.0.1/shop", None),
    ],
)
def test_the_sqlite_lock_file_sits_beside_the_database_file_sqlite_opens(
    url: str, lock: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths resolve against the working directory, as SQLite resolves them; an
    in-memory database (one process's own) and PostgreSQL need no lock file."""
    monkeypatch.chdir(tmp_path)

    found = sqlite_lock_path(url)

    assert found == (None if lock is None else tmp_path.resolve() / lock)
