"""The worker factory `payflow serve` runs: the application, with its start-up objects moved out
of the garbage collector's sight (a full collection over them paused a worker ≈ 80 ms)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from payflow.serving import create_worker_app


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session keeps ordinary collection


def test_worker_app_is_built_with_its_start_up_objects_frozen(
    unfrozen: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("REDIS_URL", "ENVIRONMENT", "STRIPE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'payflow.db'}")
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    assert gc.get_freeze_count() == 0

    app = create_worker_app()

    assert isinstance(app, FastAPI)
    assert "/api/v1/orders" in app.openapi()["paths"]
    # The routes, models and modules: tens of thousands of objects, none left to the collector.
    assert gc.get_freeze_count() > 10_000
    tracked = {id(obj) for obj in gc.get_objects()}
    assert id(app) not in tracked
    assert id(app.router) not in tracked
