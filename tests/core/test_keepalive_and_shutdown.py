"""No request lost to keep-alive, none to a graceful shutdown: a real `payflow serve`, real TCP.

- A client that keeps an idle connection longer than uvicorn's old 5 s default (browsers,
  connection pools, load balancers keep theirs 60 s or more) still gets every answer on it:
  HTTP_KEEPALIVE_TIMEOUT (75 s) keeps the connection open.
- SIGTERM under load: requests in flight finish, nothing is answered 5xx, every acknowledged
  deposit is in the ledger after a restart, the process exits 0 and its sweeper stops cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tests.live_server import (
    CLIENT_LIMITS,
    HOST,
    STARTUP_TIMEOUT,
    clean_env,
    free_port,
    payflow_command,
    run_server,
)
from tests.support import register

IDLE_SECONDS = 13  # longer than uvicorn's own default keep-alive timeout (5 s)


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


async def _load(base: str, stop: asyncio.Event) -> tuple[str, list[str], list[str], list[int]]:
    """Deposits with keys from 16 clients until the server goes away. Returns the buyer's token,
    the keys acknowledged 201, the keys whose outcome is unknown, and every status seen."""
    api = f"{base}/api/v1"
    async with httpx.AsyncClient(base_url=api, limits=CLIENT_LIMITS, timeout=30) as client:
        buyer = await register(client)
        acknowledged: list[str] = []
        unknown: list[str] = []
        statuses: list[int] = []

        async def depositor() -> None:
            while not stop.is_set():
                key = str(uuid.uuid4())
                try:
                    response = await client.post(
                        "/wallet/deposit",
                        json={"amount": "1.00"},
                        headers={**buyer.headers, "Idempotency-Key": key},
                    )
                except httpx.TransportError:
                    unknown.append(key)  # sent or not, committed or not: retried after restart
                    await asyncio.sleep(0.05)
                    continue
                statuses.append(response.status_code)
                if response.status_code == 201:
                    acknowledged.append(key)

        await asyncio.gather(*(depositor() for _ in range(16)))
        return buyer.access_token, acknowledged, unknown, statuses


def test_sigterm_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://{HOST}:{port}"
    # One user deposits as fast as 16 clients can: rate limits would answer most of it 429.
    env = {**clean_env(RATE_LIMITS_ENABLED="false"), "LOG_DIR": str(tmp_path / "logs")}
    stderr_path = tmp_path / "serve.stderr.log"
    with stderr_path.open("wb") as stderr, (tmp_path / "serve.stdout.log").open("wb") as stdout:
        process = subprocess.Popen(
            [*payflow_command(), "serve", "--host", HOST, "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            _wait_live(base)

            async def scenario() -> tuple[str, list[str], list[str], list[int]]:
                stop = asyncio.Event()
                load = asyncio.create_task(_load(base, stop))
                await asyncio.sleep(2.0)
                process.send_signal(signal.SIGTERM)
                # The load goes on while the server drains and exits.
                await asyncio.to_thread(process.wait, 40)
                stop.set()
                return await load

            token, acknowledged, unknown, statuses = asyncio.run(scenario())
            exit_code = process.wait(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    log = stderr_path.read_text(errors="replace")
    # uvicorn ends by re-raising the signal it shut down for, once shutdown is complete.
    assert exit_code in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log, log[-2000:]
    assert "Traceback" not in log, log[-4000:]
    assert acknowledged, "the load never got a deposit through"
    assert [s for s in statuses if s >= 500] == []

    with run_server(clean_env(), tmp_path) as restarted:

        async def check() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=f"{restarted}/api/v1", timeout=30) as client:
                # Each in-doubt deposit again, with its key: at most once in all.
                for key in unknown:
                    retried = await client.post(
                        "/wallet/deposit",
                        json={"amount": "1.00"},
                        headers={**headers, "Idempotency-Key": key},
                    )
                    assert retried.status_code == 201, retried.text
                wallet = (await client.get("/wallet", headers=headers)).json()
            keys = len(set(acknowledged) | set(unknown))
            assert wallet["balance"] == f"{keys}.00", (wallet, len(acknowledged), len(unknown))

        asyncio.run(check())


def _wait_live(base: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "payflow serve did not start"
        time.sleep(0.1)
