"""Logging (docs/operations.md): JSON lines with the request id, daily rotation, and no secrets ever."""

from __future__ import annotations

import json
import logging
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path

import httpx

from payflow.config import Settings
from payflow.core.logging import ACCESS_LOGGER, LOG_FILE_NAME, REDACTED, _scrub, redact
from tests.support import register


def _log_lines(settings: Settings) -> list[dict[str, object]]:
    for handler in logging.getLogger("payflow").handlers:
        handler.flush()
    text = (Path(settings.log_dir) / LOG_FILE_NAME).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_a_login_never_puts_the_password_or_tokens_in_the_log(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    password = "Sup3r-S3cret-Passw0rd!"
    account = await register(client, password=password)
    login = await client.post(
        "/auth/login",
        json={"email": account.email, "password": password},
        headers={"X-Request-ID": "login-request-1"},
    )
    assert login.status_code == 200
    await client.get("/users/me", headers=account.headers)
    await client.post("/auth/login", json={"email": account.email, "password": password + "x"})

    raw = (Path(settings.log_dir) / LOG_FILE_NAME).read_text()
    assert password not in raw
    assert account.access_token not in raw
    assert account.refresh_token not in raw
    assert login.json()["accessToken"] not in raw
    lines = _log_lines(settings)
    logins = [line for line in lines if line.get("event") == "auth.login"]
    assert logins
    assert logins[0]["requestId"] == "login-request-1"
    access = [line for line in lines if line.get("event") == "http.request"]
    assert {"method", "route", "status", "latency_ms", "requestId", "timestamp"} <= access[0].keys()
    me = [line for line in access if line["route"] == "/api/v1/users/me"]
    assert me[0]["userId"] == account.id


def test_redaction_by_key_and_by_shape() -> None:
    event = {
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc.def.ghi", "accept": "json"},
        "note": "user sent Bearer eyJhbGciOi.eyJzdWIi.sig and sk_test_123abc",
        "refreshToken": "whatever",
        "nested": [{"card_number": "4242424242424242"}],
    }
    scrubbed = _scrub(event)
    assert scrubbed["password"] == REDACTED
    assert scrubbed["headers"]["Authorization"] == REDACTED
    assert scrubbed["headers"]["accept"] == "json"
    assert "eyJ" not in scrubbed["note"]
    assert "sk_test_123abc" not in scrubbed["note"]
    assert scrubbed["refreshToken"] == REDACTED
    assert scrubbed["nested"][0]["card_number"] == REDACTED


def test_the_access_line_skips_the_scrub_only_while_it_has_its_known_fields() -> None:
    access = {
        "event": "http.request",
        "logger": ACCESS_LOGGER,
        "method": "GET",
        "route": "/api/v1/products/{product_id}",
        "status": 200,
        "latency_ms": 0.4,
        "user_id": None,
        "request_id": "abc",
    }
    assert redact(None, "info", dict(access)) == access
    leaking = {**access, "note": "Bearer eyJhbGciOi.eyJzdWIi.sig"}
    assert "eyJ" not in redact(None, "info", leaking)["note"]
    other = {**access, "logger": "payflow.orders", "route": "Bearer eyJhbGciOi.eyJzdWIi.sig"}
    assert "eyJ" not in redact(None, "info", other)["route"]


async def test_log_file_rotates_daily_and_keeps_14_days(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    files = [
        h for h in logging.getLogger("payflow").handlers if isinstance(h, TimedRotatingFileHandler)
    ]
    assert len(files) == 1
    assert files[0].when == "MIDNIGHT"
    assert files[0].backupCount == 14
    assert Path(files[0].baseFilename) == (Path(settings.log_dir) / LOG_FILE_NAME).resolve()
