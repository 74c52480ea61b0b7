"""Real `payflow` processes for end-to-end tests: the installed console script, over real TCP.

`run_server` starts `payflow serve` on a free port, waits until it answers `/health/live`, yields
its base URL and always stops it again. `run_cli` runs any other `payflow` command to completion.
Both take the environment explicitly; `clean_env` gives one with no payflow setting inherited from
the developer's shell, so each test says exactly what configuration it runs with.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from payflow.config import Settings

STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 10.0
HOST = "127.0.0.1"
# uvicorn closes a connection idle for 5 s, and httpx keeps idle connections for 5 s too: a request
# sent on one just as the server closes it is lost as httpx.ReadError (a POST cannot be blindly
# re-sent). Clients of a live server drop idle connections well before the server does.
KEEPALIVE_EXPIRY = 1.0
CLIENT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY
)


def payflow_command() -> list[str]:
    """The `payflow` console script installed next to this interpreter, else `python -m payflow`."""
    script = Path(sys.executable).with_name("payflow")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "payflow"]


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment minus every variable payflow's Settings reads, plus overrides.

    pydantic-settings matches names case-insensitively, so stripping is case-insensitive too.
    """
    setting_names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in setting_names}
    env.update(overrides)
    return env


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `payflow *args` to completion and return its exit code and output."""
    return subprocess.run(
        [*payflow_command(), *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServerStartError(RuntimeError):
    """`payflow serve` exited, or did not answer in time."""


def _output_of(stdout: Path, stderr: Path) -> str:
    def tail(path: Path) -> str:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        return text[-4000:]

    return f"--- stdout ---\n{tail(stdout)}\n--- stderr ---\n{tail(stderr)}"


def _wait_until_live(process: subprocess.Popen[bytes], base_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while True:
            if process.poll() is not None:
                raise ServerStartError(f"payflow serve exited with code {process.returncode}")
            try:
                if client.get("/health/live").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(f"payflow serve did not answer within {timeout:.0f} s")
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn's graceful shutdown, workers included), then SIGKILL to its group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
    # The server runs in its own session: its group holds it and any worker it left behind.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=SHUTDOWN_TIMEOUT)


class ServerURL(str):
    """A running server's base URL that also knows the server's process id (its group leader)."""

    pid: int


@contextmanager
def run_server(
    env: Mapping[str, str],
    cwd: Path,
    workers: int = 1,
    *,
    port: int | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[ServerURL]:
    """Run `payflow serve` in `cwd` with exactly `env`; yield its base URL, e.g. http://127.0.0.1:P.

    `LOG_DIR` defaults to `cwd/logs`; the process's stdout and stderr go to files in `cwd` and are
    quoted in the error when it fails to start.
    """
    port = port or free_port()
    env = {"LOG_DIR": str(cwd / "logs"), **env}
    stdout_path = cwd / f"serve-{port}.stdout.log"
    stderr_path = cwd / f"serve-{port}.stderr.log"
    command = [
        *payflow_command(),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    base_url = f"http://{HOST}:{port}"
    with ExitStack() as stack:
        stdout = stack.enter_context(stdout_path.open("wb"))
        stderr = stack.enter_context(stderr_path.open("wb"))
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            try:
                _wait_until_live(process, base_url, startup_timeout)
            except ServerStartError as exc:
                raise ServerStartError(f"{exc}\n{_output_of(stdout_path, stderr_path)}") from None
            url = ServerURL(base_url)
            url.pid = process.pid
            yield url
        finally:
            _stop(process)
