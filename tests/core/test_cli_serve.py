"""`payflow serve` and `payflow migrate` end to end: the installed console script, real TCP.

The embedded default (no configuration at all) must give a working API on `./payflow.db`; with
`TEST_DATABASE_URL` set, the same flow also runs on a fresh PostgreSQL database. Configurations that
are unfit to run refuse to start with exit code 2 and say why, without echoing any secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.live_server import CLIENT_LIMITS, clean_env, free_port, run_cli, run_server
from tests.support import DEFAULT_PASSWORD, unique_email

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
SERVE_BACKENDS = ["sqlite", *(["postgres"] if TEST_DATABASE_URL else [])]

SCHEMA_TABLES = {"users", "wallets", "refresh_tokens", "alembic_version"}
REFUSAL_TIMEOUT = 30.0  # hard limit for a refusal; it is asserted to take far less
QUICK_REFUSAL_SECONDS = 15.0


def _good_production_secrets() -> dict[str, str]:
    return {
        "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
        "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
    }


# --- databases ------------------------------------------------------------------------------


def _sqlite_tables(path: Path) -> set[str]:
    """Table names in an existing SQLite file (read-only: never creates the file)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
    return {str(name) for (name,) in rows}


def _plain_pg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _pg_url_with_database(url: str, name: str) -> str:
    base, _, _ = _plain_pg_url(url).rpartition("/")
    return f"{base}/{name}"


async def _pg_execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _pg_tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {str(row["table_name"]) for row in rows}


@dataclass(frozen=True)
class ServeTarget:
    """How to run `payflow serve` against one kind of database, and how to look inside it."""

    name: str
    workdir: Path
    log_dir: Path
    env: dict[str, str]
    tables: Callable[[], set[str]]


@pytest.fixture(params=SERVE_BACKENDS)
def serve_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServeTarget]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    log_dir = tmp_path / "logs"
    env = clean_env(ENVIRONMENT="development", LOG_DIR=str(log_dir))
    if request.param == "sqlite":
        # Nothing configured at all: the embedded default, ./payflow.db in the working directory.
        yield ServeTarget(
            "sqlite", workdir, log_dir, env, lambda: _sqlite_tables(workdir / "payflow.db")
        )
        return

    assert TEST_DATABASE_URL is not None
    admin_url = _plain_pg_url(TEST_DATABASE_URL)
    name = f"pf_serve_{uuid.uuid4().hex[:12]}"
    database_url = _pg_url_with_database(admin_url, name)
    asyncio.run(_pg_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        env["DATABASE_URL"] = (
            database_url  # the plain form an operator writes; payflow adds asyncpg
        )
        if TEST_REDIS_URL:
            env["REDIS_URL"] = TEST_REDIS_URL
            env["REDIS_KEY_PREFIX"] = f"test:serve:{uuid.uuid4().hex}:"
        yield ServeTarget(
            "postgres", workdir, log_dir, env, lambda: asyncio.run(_pg_tables(database_url))
        )
    finally:
        asyncio.run(_pg_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- payflow serve ----------------------------------------------------------------------------


def test_serve_migrates_and_answers_over_http(serve_target: ServeTarget) -> None:
    default_db = serve_target.workdir / "payflow.db"
    assert not default_db.exists()

    with run_server(serve_target.env, serve_target.workdir) as base_url:
        assert serve_target.tables() >= SCHEMA_TABLES

        ready = httpx.get(f"{base_url}/health/ready", timeout=10.0)
        assert ready.status_code == 200, ready.text
        expected_checks = {"database": "ok"}
        if "REDIS_URL" in serve_target.env:
            expected_checks["redis"] = "ok"
        assert ready.json()["checks"] == expected_checks

        with httpx.Client(
            base_url=f"{base_url}/api/v1", timeout=30.0, limits=CLIENT_LIMITS
        ) as client:
            email = unique_email("serve")
            registered = client.post(
                "/auth/register", json={"email": email, "password": DEFAULT_PASSWORD}
            )
            assert registered.status_code == 201, registered.text
            user_id = registered.json()["user"]["id"]

            login = client.post("/auth/login", json={"email": email, "password": DEFAULT_PASSWORD})
            assert login.status_code == 200, login.text
            assert login.json()["user"]["id"] == user_id
            access_token = login.json()["accessToken"]

            me = client.get("/users/me", headers={"Authorization": f"Bearer {access_token}"})
            assert me.status_code == 200, me.text
            assert me.json()["id"] == user_id
            assert me.json()["email"] == email

            anonymous = client.get("/users/me")
            assert anonymous.status_code == 401

    # The embedded default lives in the working directory; a configured database leaves no file.
    assert default_db.exists() is (serve_target.name == "sqlite")

    # JSON lines in LOG_DIR, and no credential in them.
    log_text = (serve_target.log_dir / "payflow.log").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in log_text.splitlines()]
    assert any(line.get("route") == "/api/v1/auth/login" for line in lines)
    assert DEFAULT_PASSWORD not in log_text
    assert access_token not in log_text


# --- payflow migrate --------------------------------------------------------------------------


def test_migrate_creates_the_schema_and_is_repeatable(tmp_path: Path) -> None:
    database = tmp_path / "x.db"
    env = clean_env(
        ENVIRONMENT="development",
        DATABASE_URL=f"sqlite:///{database}",
        LOG_DIR=str(tmp_path / "logs"),
    )

    first = run_cli("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert {"users", "wallets", "refresh_tokens"} <= _sqlite_tables(database)

    again = run_cli("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "payflow.db").exists()


# --- refusals ---------------------------------------------------------------------------------


def _refused_serve(env: dict[str, str], cwd: Path) -> str:
    """Run `payflow serve`; assert it exits 2 quickly without touching a database; its stderr."""
    started = time.monotonic()
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=cwd, timeout=REFUSAL_TIMEOUT)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert elapsed < QUICK_REFUSAL_SECONDS
    assert "configuration error" in result.stderr
    assert not (cwd / "payflow.db").exists()
    return result.stderr


def test_production_refuses_default_secrets(tmp_path: Path) -> None:
    stderr = _refused_serve(clean_env(ENVIRONMENT="production"), tmp_path)
    for name in (
        "JWT_ACCESS_SECRET",
        "JWT_REFRESH_SECRET",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
    ):
        assert name in stderr


def test_production_refuses_the_sqlite_default(tmp_path: Path) -> None:
    good = _good_production_secrets()
    stderr = _refused_serve(clean_env(ENVIRONMENT="production", **good), tmp_path)
    assert "DATABASE_URL" in stderr
    for name, value in good.items():
        assert name not in stderr  # only the real problem is named
        assert value[-12:] not in stderr  # and no secret, not even a fragment, is echoed


def test_low_bcrypt_rounds_are_refused_outside_test(tmp_path: Path) -> None:
    stderr = _refused_serve(clean_env(ENVIRONMENT="development", BCRYPT_ROUNDS="4"), tmp_path)
    assert "BCRYPT_ROUNDS" in stderr
