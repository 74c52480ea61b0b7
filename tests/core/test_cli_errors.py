"""Common set-up mistakes get one line naming the variable and what to do, and exit code 2 —
never a driver's traceback (that only with --debug) — and `payflow audit` never creates an empty
database where none was."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.db_helpers import TEST_DATABASE_URL
from tests.live_server import clean_env, run_cli

CLOSED_PG = "postgresql://postgres@127.0.0.1:1/payflow"


def _refused(result_stderr: str, *needles: str) -> None:
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("payflow: "), result_stderr
    for needle in needles:
        assert needle in lines[0], result_stderr
    assert "Traceback" not in result_stderr


@pytest.mark.parametrize("command", ["migrate", "audit", "demo", "serve"])
def test_an_unreachable_database_is_one_line(tmp_path: Path, command: str) -> None:
    result = run_cli(command, env=clean_env(DATABASE_URL=CLOSED_PG), cwd=tmp_path)
    assert result.returncode == 2
    _refused(result.stderr, "DATABASE_URL", "cannot reach PostgreSQL at 127.0.0.1:1")


@pytest.mark.parametrize("command", ["migrate", "audit"])
def test_an_unsupported_scheme_is_one_line(tmp_path: Path, command: str) -> None:
    result = run_cli(command, env=clean_env(DATABASE_URL="mysql://u@h/db"), cwd=tmp_path)
    assert result.returncode == 2
    _refused(result.stderr, "DATABASE_URL", "unsupported scheme 'mysql'")


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_an_unreachable_redis_is_one_line(tmp_path: Path, command: str) -> None:
    env = clean_env(REDIS_URL="redis://127.0.0.1:1/0")
    result = run_cli(command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    _refused(result.stderr, "REDIS_URL", "cannot reach Redis at 127.0.0.1:1")


def test_audit_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    result = run_cli("audit", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2
    _refused(result.stderr, "DATABASE_URL", "payflow.db does not exist", "payflow migrate")
    assert not (tmp_path / "payflow.db").exists()


def test_debug_shows_the_traceback_too(tmp_path: Path) -> None:
    result = run_cli("--debug", "migrate", env=clean_env(DATABASE_URL=CLOSED_PG), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("payflow: DATABASE_URL")


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL only: set TEST_DATABASE_URL to run")
def test_a_missing_postgres_database_is_one_line(tmp_path: Path) -> None:
    server, _, _ = (TEST_DATABASE_URL or "").rpartition("/")
    url = f"{server}/payflow_no_such_database"
    result = run_cli("migrate", env=clean_env(DATABASE_URL=url), cwd=tmp_path)
    assert result.returncode == 2
    _refused(result.stderr, "DATABASE_URL", "'payflow_no_such_database' does not exist", "createdb")
