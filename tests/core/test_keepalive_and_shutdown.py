"""No request lost to keep-alive, none to a graceful shutdown: a real `payflow serve`, real TCP.

- A client that keeps an idle connection longer than uvicorn's old 5 s default (browsers,
  connection pools, load balancers keep theirs 60 s or more) still gets every answer on it:
  HTTP_KEEPALIVE_TIMEOUT (75 s) keeps the connection open.
- SIGTERM under load: requests in flight finish, nothing is answered 5xx, every acknowledged
  deposit is in the ledger after a restart (and no other), the process exits 0 within
  SHUTDOWN_GRACE_SECONDS and its sweeper stops without an error.
- The sweeper cancelled in the middle of a statement (what shutdown does to it) logs no error
  and leaves the pools closable, on both back ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.app import create_app
from payflow.config import Settings
from payflow.jobs import retention
from payflow.jobs.retention import PruneReport
from tests.db_helpers import with_conn
from tests.live_server import (
    CLIENT_LIMITS,
    HOST,
    STARTUP_TIMEOUT,
    clean_env,
    free_port,
    payflow_command,
    run_cli,
    run_server,
)
from tests.support import Account, register

IDLE_SECONDS = 13  # longer than uvicorn's own default keep-alive timeout (5 s)
GRACE_SECONDS = 15  # SHUTDOWN_GRACE_SECONDS for the SIGTERM test
CLIENTS = 24
BUYERS = 4
LOAD_BEFORE_SIGTERM = 2.0


def test_the_timeouts_default_to_75_and_30_seconds_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HTTP_KEEPALIVE_TIMEOUT", raising=False)
    monkeypatch.delenv("SHUTDOWN_GRACE_SECONDS", raising=False)
    settings = Settings(_env_file=None)
    assert (settings.http_keepalive_timeout, settings.shutdown_grace_seconds) == (75, 30)
    with pytest.raises(ValidationError, match="http_keepalive_timeout"):
        Settings(_env_file=None, http_keepalive_timeout=0)
    with pytest.raises(ValidationError, match="shutdown_grace_seconds"):
        Settings(_env_file=None, shutdown_grace_seconds=0)


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body: its status and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection (read so far: {data!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        body += chunk
    return status, body[:length]


def _get(sock: socket.socket, path: str) -> tuple[int, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: */*\r\n\r\n".encode())
    return _read_response(sock)


def test_an_idle_keep_alive_connection_still_gets_every_answer(tmp_path: Path) -> None:
    with run_server(clean_env(), tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection((HOST, port), timeout=30) as sock:
            assert _get(sock, "/health/live")[0] == 200
            time.sleep(IDLE_SECONDS)  # a pooled connection waiting for the client's next request
            assert _get(sock, "/health/live")[0] == 200
            assert _get(sock, "/api/v1/products")[0] == 200


@dataclass
class _Outcomes:
    """What the clients saw: deposits acknowledged 201 (per buyer), requests whose outcome is
    unknown (sent, then the connection broke), every status received."""

    acknowledged: dict[str, int] = field(default_factory=dict)
    in_doubt: int = 0
    refused: int = 0
    statuses: list[int] = field(default_factory=list)


async def _load(base: str, stop: asyncio.Event) -> tuple[list[Account], _Outcomes]:
    """Deposits with Idempotency-Keys from CLIENTS clients, spread over BUYERS buyers, until
    `stop`."""
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", limits=CLIENT_LIMITS, timeout=30) as c:
        buyers = [await register(c) for _ in range(BUYERS)]
        outcomes = _Outcomes(acknowledged={buyer.id: 0 for buyer in buyers})

        async def depositor(buyer: Account) -> None:
            while not stop.is_set():
                try:
                    response = await c.post(
                        "/wallet/deposit",
                        json={"amount": "1.00"},
                        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
                    )
                except httpx.ConnectError:
                    outcomes.refused += 1  # never sent: the server stopped accepting
                    await asyncio.sleep(0.05)
                    continue
                except httpx.TransportError:
                    outcomes.in_doubt += 1  # a kept-alive connection closed under the request
                    await asyncio.sleep(0.05)
                    continue
                outcomes.statuses.append(response.status_code)
                if response.status_code == 201:
                    outcomes.acknowledged[buyer.id] += 1

        await asyncio.gather(*(depositor(buyers[i % BUYERS]) for i in range(CLIENTS)))
        return buyers, outcomes


def test_sigterm_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {
        **clean_env(
            # Many deposits per buyer: rate limits would answer most of them 429.
            RATE_LIMITS_ENABLED="false",
            SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
            # The sweeper runs all the time, so that shutdown is likely to find it mid-sweep.
            SWEEPER_INTERVAL_SECONDS="0.05",
        ),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    stdout_path, stderr_path = tmp_path / "serve.stdout.log", tmp_path / "serve.stderr.log"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        process = subprocess.Popen(
            [*payflow_command(), "serve", "--host", HOST, "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            _wait_live(base, process, stdout_path, stderr_path)

            async def scenario() -> tuple[list[Account], _Outcomes, int | None]:
                stop = asyncio.Event()
                load = asyncio.create_task(_load(base, stop))
                await asyncio.sleep(LOAD_BEFORE_SIGTERM)
                process.send_signal(signal.SIGTERM)
                # The load goes on while the server drains and exits.
                try:
                    code: int | None = await asyncio.to_thread(process.wait, GRACE_SECONDS + 15)
                except subprocess.TimeoutExpired:
                    code = None
                stop.set()
                buyers, outcomes = await load
                return buyers, outcomes, code

            buyers, outcomes, exit_code = asyncio.run(scenario())
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    output = stdout_path.read_text(errors="replace") + stderr_path.read_text(errors="replace")
    assert exit_code == 0, output[-4000:]
    assert "Application shutdown complete" in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert '"level":"error"' not in output, output[-4000:]  # payflow's own log lines
    # uvicorn's, e.g. requests still running when the grace period ended
    assert re.search(r"^ERROR:", output, re.MULTILINE) is None, output[-4000:]
    assert sum(outcomes.acknowledged.values()) > 0, "the load never got a deposit through"
    assert [status for status in outcomes.statuses if status >= 500] == []

    # Every acknowledged deposit, and no other, is in each buyer's balance.
    with run_server(env, tmp_path) as restarted:

        async def balances() -> dict[str, Decimal]:
            async with httpx.AsyncClient(base_url=f"{restarted}/api/v1", timeout=30) as client:
                found: dict[str, Decimal] = {}
                for buyer in buyers:
                    wallet = await client.get("/wallet", headers=buyer.headers)
                    assert wallet.status_code == 200, wallet.text
                    found[buyer.id] = Decimal(wallet.json()["balance"])
                return found

        expected = {buyer_id: Decimal(n) for buyer_id, n in outcomes.acknowledged.items()}
        assert asyncio.run(balances()) == expected, outcomes
    audit = run_cli("audit", env=env, cwd=tmp_path)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _wait_live(base: str, process: subprocess.Popen[bytes], *outputs: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"payflow serve exited with code {process.returncode}\n{_tails(outputs)}"
            )
        try:
            if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"payflow serve did not start\n{_tails(outputs)}")
        time.sleep(0.1)


def _tails(paths: tuple[Path, ...]) -> str:
    return "\n".join(path.read_text(errors="replace")[-2000:] for path in paths)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _warnings_and_errors(*loggers: str) -> Iterator[list[logging.LogRecord]]:
    """Every record at WARNING or above, from these loggers and what propagates to the root."""
    handler = _Records()
    targets = [logging.getLogger(name) for name in ("", *loggers)]
    for target in targets:
        target.addHandler(handler)
    try:
        yield handler.records
    finally:
        for target in targets:
            target.removeHandler(handler)


async def test_cancelling_the_sweeper_mid_statement_is_clean(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown cancels the sweeper wherever it is: here in the middle of a slow statement of
    its last duty, inside a transaction. The application still shuts down cleanly."""
    in_statement = asyncio.Event()
    finished = False
    slow_statement = (
        "SELECT count(*) FROM (WITH RECURSIVE n(x) AS "
        "(SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000000) SELECT x FROM n) AS t"
        if settings.is_sqlite
        else "SELECT pg_sleep(30)"
    )

    async def slow_prune(db: object) -> PruneReport:
        nonlocal finished

        async def work(conn: AsyncConnection) -> None:
            in_statement.set()
            await conn.exec_driver_sql(slow_statement)

        await app.state.context.db.transaction(with_conn(work))
        finished = True
        return PruneReport(idempotency_records=0, refresh_tokens=0, webhook_events=0)

    monkeypatch.setattr(retention, "prune_expired", slow_prune)
    app = create_app(settings.model_copy(update={"sweeper_interval_seconds": 0.01}))
    with _warnings_and_errors("payflow") as records:
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(in_statement.wait(), timeout=30)
            await asyncio.sleep(0.1)  # the statement is now running in the database
        # Leaving the lifespan cancelled the sweeper and closed the pools.
    assert not finished
    assert [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR] == []
