"""Test fixtures: every test runs on the embedded default (SQLite + in-process cache) and, when
TEST_DATABASE_URL / TEST_REDIS_URL are set, again on real PostgreSQL + Redis.

Isolation without deleting tables: each test gets its own freshly cloned database (a copy of a
migrated SQLite file, or `CREATE DATABASE ... TEMPLATE` on PostgreSQL) and its own Redis key prefix.
Unreachable services fail the run; nothing is skipped for want of them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis import Redis

from payflow.app import create_app
from payflow.config import Settings
from payflow.core import migrations
from tests.deployments import deployment  # noqa: F401 - a fixture for every test module

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
BACKENDS = ["sqlite", *(["postgres"] if TEST_DATABASE_URL else [])]


def _plain_pg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str | None


class PostgresTemplates:
    """A migrated template database, cloned once per test."""

    def __init__(self, url: str) -> None:
        self.admin_url = _plain_pg_url(url)
        self.prefix = "pf_" + uuid.uuid4().hex[:8]
        self.template = f"{self.prefix}_tpl"
        asyncio.run(self._admin(f'CREATE DATABASE "{self.template}"'))
        migrations.upgrade(self._settings(self.template))

    def _settings(self, database: str) -> Settings:
        url = _with_database(self.admin_url, database).replace(
            "postgresql://", "postgresql+asyncpg://"
        )
        return Settings(_env_file=None, environment="test", database_url=url, bcrypt_rounds=4)

    async def _admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def clone(self) -> str:
        name = f"{self.prefix}_{uuid.uuid4().hex[:12]}"
        asyncio.run(self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return name

    def url_of(self, name: str) -> str:
        return self._settings(name).database_url

    def drop(self, name: str) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.drop(self.template)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "payflow.db"
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url=f"sqlite+aiosqlite:///{path}",
        bcrypt_rounds=4,
    )
    migrations.upgrade(settings)
    return path


@pytest.fixture(scope="session")
def postgres_templates() -> Iterator[PostgresTemplates | None]:
    if not TEST_DATABASE_URL:
        yield None
        return
    templates = PostgresTemplates(TEST_DATABASE_URL)
    yield templates
    templates.close()


@pytest.fixture(scope="session", autouse=True)
def _redis_reachable() -> None:
    if TEST_REDIS_URL:
        client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
        try:
            client.ping()  # raises, failing the whole run, when Redis is unreachable
        finally:
            client.close()


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_templates: PostgresTemplates | None,
) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "payflow.db"
        shutil.copyfile(sqlite_template, path)
        yield Backend("sqlite", f"sqlite+aiosqlite:///{path}", None)
        return
    assert postgres_templates is not None
    name = postgres_templates.clone()
    yield Backend("postgres", postgres_templates.url_of(name), TEST_REDIS_URL)
    postgres_templates.drop(name)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        database_url=backend.database_url,
        redis_url=backend.redis_url,
        redis_key_prefix=f"test:{uuid.uuid4().hex}:",
        bcrypt_rounds=4,
        log_dir=str(tmp_path / "logs"),
        log_level="INFO",
        rate_limits_enabled=False,  # tests/core/test_rate_limits.py turns them on
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://payflow.test/api/v1") as c:
        yield c
