"""CI sets TEST_DATABASE_URL / TEST_REDIS_URL; an unreachable service must fail the run, not skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
ONE_TEST = "tests/core/test_operations.py::test_liveness_and_readiness"


def _run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", ONE_TEST],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "env",
    [
        {"TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"},
        {"TEST_REDIS_URL": "redis://127.0.0.1:1/0"},
    ],
    ids=["postgres-down", "redis-down"],
)
def test_an_unreachable_service_fails_the_run(env: dict[str, str]) -> None:
    result = _run_pytest(**env)
    assert result.returncode != 0, result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]
    assert "error" in result.stdout.splitlines()[-1]
