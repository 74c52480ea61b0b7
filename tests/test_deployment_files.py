"""The deployment files hold together: compose.yaml runs payflow on PostgreSQL and Redis with health
checks and migrations first, refusing to start without its secrets; the Dockerfile builds a
non-root image from the pinned runtime set with a health check. (CI also runs `docker-compose
config` when the tool is there; building the image needs a Docker daemon this machine lacks.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from payflow.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SECRETS = ("JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def test_compose_runs_payflow_on_postgres_and_redis_once_they_are_healthy() -> None:
    services = _compose()["services"]
    assert {"payflow", "migrate", "postgres", "redis"} <= set(services)
    for name in ("postgres", "redis", "payflow"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    payflow = services["payflow"]
    assert payflow["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["command"] == ["payflow", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "8000:8000" in payflow["ports"]
    # Longer than SHUTDOWN_GRACE_SECONDS: in-flight requests finish before the container is killed.
    grace = int(str(payflow["stop_grace_period"]).removesuffix("s"))
    assert grace > Settings.model_fields["shutdown_grace_seconds"].default


def test_compose_configures_production_and_requires_every_secret() -> None:
    services = _compose()["services"]
    env = services["payflow"]["environment"]
    assert env == services["migrate"]["environment"]
    assert env["ENVIRONMENT"] == "production"
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://payflow:")
    assert env["DATABASE_URL"].endswith("@postgres:5432/payflow")
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    for name in (*SECRETS, "PUBLIC_URL"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), f"{name} is not required"
    settings = {field.upper() for field in Settings.model_fields}
    assert set(env) <= settings, set(env) - settings


def test_the_dockerfile_builds_a_non_root_image_from_the_pinned_set() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [
        line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")
    ]
    keywords = [parts[0] for parts in instructions if parts[0].isupper()]
    assert re.search(r"^FROM python:3\.1[1-9]-slim$", text, re.MULTILINE)
    users = [parts[1].strip() for parts in instructions if parts[0] == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in keywords
    assert re.search(r"^EXPOSE 8000$", text, re.MULTILINE)
    assert "pip install -r requirements/runtime.txt" in text
    assert '"payflow", "serve", "--host", "0.0.0.0"' in text
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "*.db"} <= set(ignored)
