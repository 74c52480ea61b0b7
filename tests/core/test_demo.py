"""`payflow demo` prints only its own output on stdout (logs go to stderr), commands that work as
typed, and the products in the same order every run."""

from __future__ import annotations

import re
from pathlib import Path

from tests.live_server import clean_env, run_cli


def _product_names(stdout: str) -> list[str]:
    return re.findall(r"^    [0-9a-f-]{36}  \S+ USD  (.+)$", stdout, re.MULTILINE)


def test_demo_output_is_clean_runnable_and_stable(tmp_path: Path) -> None:
    env = clean_env(ENVIRONMENT="development", LOG_DIR=str(tmp_path / "logs"))
    first = run_cli("demo", env=env, cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert not [line for line in first.stdout.splitlines() if line.lstrip().startswith("{")]
    assert '"event"' in first.stderr  # the logs are still there, on stderr
    assert "make serve" in first.stdout
    assert ".venv/bin/payflow serve" in first.stdout
    names = _product_names(first.stdout)
    assert len(names) == 3
    assert names == sorted(names)

    again = run_cli("demo", env=env, cwd=tmp_path, timeout=120)  # logs in, finds the products
    assert again.returncode == 0, again.stderr[-2000:]
    assert _product_names(again.stdout) == names
