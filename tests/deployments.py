"""A fresh database for one test, to run real `payflow` processes against (the `deployment` fixture).

Unlike the `backend` fixture (a clone of an already migrated template, for in-process apps), a
deployment starts empty: `payflow serve` applies the migrations itself, as it would in production.
It is parametrized like every other test: SQLite (a file in the test's tmp_path) always, and a newly
created PostgreSQL database (plus Redis, with a key prefix of its own) when TEST_DATABASE_URL /
TEST_REDIS_URL are set. The database is dropped again after the test.

    def test_x(deployment: Deployment) -> None:
        with deployment.server() as base_url:
            ...                                  # drive it over TCP
        assert deployment.audit().returncode == 0
        deployment.sql("UPDATE wallets SET balance = balance + 1 WHERE id = $1", wallet_id)
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.live_server import ServerURL, clean_env, run_cli, run_server

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
BACKENDS = ["sqlite", *(["postgres"] if TEST_DATABASE_URL else [])]

# What every deployment runs with: test settings (cheap bcrypt), no rate limits in the way.
BASE_ENV = {"ENVIRONMENT": "test", "BCRYPT_ROUNDS": "4", "RATE_LIMITS_ENABLED": "false"}


def plain_pg_url(url: str) -> str:
    """A PostgreSQL URL as asyncpg and psql take it (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def pg_url_with_database(url: str, name: str) -> str:
    base, _, _ = plain_pg_url(url).rpartition("/")
    return f"{base}/{name}"


async def pg_execute(url: str, statement: str, *args: object) -> str:
    """Run one statement on its own connection; asyncpg's status string (e.g. "UPDATE 1")."""
    conn = await asyncpg.connect(url)
    try:
        status: str = await conn.execute(statement, *args)
    finally:
        await conn.close()
    return status


async def pg_fetch(url: str, statement: str, *args: object) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        records = await conn.fetch(statement, *args)
    finally:
        await conn.close()
    return [tuple(record) for record in records]


def _sqlite_statement(statement: str, args: tuple[object, ...]) -> tuple[str, list[object]]:
    """`$n` (and `$n::type`) parameters become `?`; UUIDs become the 32 hex digits SQLAlchemy
    stores on SQLite. Parameters must appear in order."""
    params = [arg.hex if isinstance(arg, uuid.UUID) else arg for arg in args]
    return re.sub(r"\$\d+(::\w+)?", "?", statement), params


@dataclass(frozen=True)
class Deployment:
    """Where one test's payflow runs: its environment, working directory and database."""

    backend: str  # "sqlite" or "postgres"
    env: dict[str, str]
    workdir: Path
    database_url: str
    redis_url: str | None = None

    def with_env(self, **overrides: str) -> Deployment:
        """The same database, with more (or other) settings for the processes run against it."""
        return replace(self, env={**self.env, **overrides})

    def server(
        self, workers: int = 1, *, port: int | None = None
    ) -> AbstractContextManager[ServerURL]:
        """`payflow serve` on this database (tests.live_server.run_server); yields its base URL."""
        return run_server(self.env, self.workdir, workers, port=port)

    def audit(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `payflow audit *args` against this database, to completion."""
        return run_cli("audit", *args, env=self.env, cwd=self.workdir, timeout=timeout)

    def sql(self, statement: str, *args: object) -> int:
        """Run one statement behind payflow's back; the number of rows it changed.

        Parameters use PostgreSQL's `$n` style; on SQLite they become `?`, and UUIDs are passed in
        the form SQLAlchemy stores them there (32 hex digits). Parameters appear in order.
        Synchronous (it runs its own event loop on PostgreSQL): from async code, call it through
        `asyncio.to_thread`.
        """
        if self.backend == "postgres":
            status = asyncio.run(pg_execute(self.database_url, statement, *args))
            return int(status.rsplit(" ", 1)[-1])
        statement, params = _sqlite_statement(statement, args)
        conn = sqlite3.connect(self.sqlite_path)
        try:
            with conn:
                return conn.execute(statement, params).rowcount
        finally:
            conn.close()

    def query(self, statement: str, *args: object) -> list[tuple[Any, ...]]:
        """Run one SELECT behind payflow's back; its rows, as tuples. Parameters as for `sql`;
        values come back as each driver gives them (on SQLite, UUIDs are 32 hex digits)."""
        if self.backend == "postgres":
            return asyncio.run(pg_fetch(self.database_url, statement, *args))
        statement, params = _sqlite_statement(statement, args)
        conn = sqlite3.connect(self.sqlite_path)
        try:
            return [tuple(row) for row in conn.execute(statement, params).fetchall()]
        finally:
            conn.close()

    @property
    def sqlite_path(self) -> str:
        return self.database_url.removeprefix("sqlite:///")


@pytest.fixture(params=BACKENDS)
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """A fresh, empty database (SQLite file, or a new PostgreSQL database + Redis prefix)."""
    env = clean_env(**BASE_ENV)
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'payflow.db'}"
        env["DATABASE_URL"] = database_url
        yield Deployment("sqlite", env, tmp_path, database_url)
        return

    assert TEST_DATABASE_URL is not None
    admin_url = plain_pg_url(TEST_DATABASE_URL)
    name = f"pf_dep_{uuid.uuid4().hex[:12]}"
    database_url = pg_url_with_database(admin_url, name)
    asyncio.run(pg_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        env["DATABASE_URL"] = database_url
        if TEST_REDIS_URL:
            env["REDIS_URL"] = TEST_REDIS_URL
            env["REDIS_KEY_PREFIX"] = f"test:dep:{uuid.uuid4().hex}:"
        yield Deployment("postgres", env, tmp_path, database_url, TEST_REDIS_URL)
    finally:
        asyncio.run(pg_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
