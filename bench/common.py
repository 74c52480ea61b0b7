"""What the benchmark's scripts share: starting and stopping payflow, CPU accounting, small helpers."""

from __future__ import annotations

import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PAYFLOW = str(Path(sys.executable).parent / "payflow")

JWT_ACCESS_SECRET = "bench-access-secret-0123456789abcdef-" + "a" * 8
JWT_REFRESH_SECRET = "bench-refresh-secret-0123456789abcdef-" + "b" * 8
JWT_ACCESS_TTL = 7200

# Settings the benchmark fixes for every server it starts; anything else (DB_POOL_SIZE, …) is taken
# from the caller's environment, and recorded in the results.
_FIXED = {
    "ENVIRONMENT": "development",
    "RATE_LIMITS_ENABLED": "false",
    "JWT_ACCESS_SECRET": JWT_ACCESS_SECRET,
    "JWT_REFRESH_SECRET": JWT_REFRESH_SECRET,
    "JWT_ACCESS_TTL": str(JWT_ACCESS_TTL),
}
# Variables of the caller's environment that must not leak into a benchmark server.
_DROPPED = (
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRET",
    "IN_PROCESS_CACHE",
    "BCRYPT_ROUNDS",
    "PUBLIC_URL",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_id() -> str:
    return secrets.token_hex(4)


def server_env(
    *,
    database_url: str,
    log_dir: Path,
    redis_url: str | None = None,
    redis_prefix: str | None = None,
    external_gateway: bool = False,
) -> dict[str, str]:
    """The environment of a benchmark server. `external_gateway` sets a Stripe key (required by
    `serve --workers N>1`) aimed at a closed port: no benchmark scenario uses the gateway."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(_FIXED)
    env["DATABASE_URL"] = database_url
    env["LOG_DIR"] = str(log_dir)
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["REDIS_KEY_PREFIX"] = redis_prefix or f"payflow-bench-{new_id()}:"
    if external_gateway:
        env["STRIPE_SECRET_KEY"] = "sk_test_bench"  # noqa: S105 - a key for a closed port
        env["STRIPE_API_BASE"] = "http://127.0.0.1:9"
    return env


@dataclass
class Server:
    """`payflow serve` in its own process group; stdout and stderr go to `log_path`."""

    env: dict[str, str]
    workers: int
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                PAYFLOW,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.log_path.parent,
        )
        deadline = time.monotonic() + timeout
        ready = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"payflow serve exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    ready += 1
                    if ready >= 3 * self.workers:
                        time.sleep(1.0)  # let the last worker finish its start-up
                        return
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"payflow serve did not become ready in {timeout:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own process group only
            process.wait(timeout=10)

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# --- CPU accounting -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, int, int]]:
    """pid → (ppid, comm, own cpu ticks, reaped children's cpu ticks)."""
    found: dict[int, tuple[int, str, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        close = raw.rindex(b")")
        comm = raw[raw.index(b"(") + 1 : close].decode(errors="replace")
        fields = raw[close + 2 :].split()
        found[int(entry)] = (
            int(fields[1]),
            comm,
            int(fields[11]) + int(fields[12]),
            int(fields[13]) + int(fields[14]),
        )
    return found


def _machine() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    return sum(values), values[3] + values[4]


def _descendants(procs: dict[int, tuple[int, str, int, int]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


class CpuMeter:
    """CPU used during a window, in % of one core (200 = both cores of this machine), split into
    the payflow server (its processes), PostgreSQL (every postgres process, exited backends
    included through the postmaster), the load generator (our waited-for children) and the rest
    of the machine ("other": other users of this machine, Redis, the kernel)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self._start = self._sample()

    def _sample(self) -> dict[str, Any]:
        procs = _processes()
        total, idle = _machine()
        server = 0
        workers: dict[int, int] = {}
        if self.server_pid is not None:
            tree = _descendants(procs, self.server_pid)
            server = sum(procs[p][2] + procs[p][3] for p in tree)
            workers = {p: procs[p][2] for p in tree if p != self.server_pid}
        postgres = 0
        for ppid, comm, own, reaped in procs.values():
            if comm == "postgres":
                postgres += own + (reaped if procs.get(ppid, (0, ""))[1] != "postgres" else 0)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "t": time.monotonic(),
            "total": total,
            "idle": idle,
            "server": server,
            "workers": workers,
            "postgres": postgres,
            "loadgen": children.ru_utime + children.ru_stime,
            "load": os.getloadavg()[0],
        }

    def stop(self) -> dict[str, float]:
        end = self._sample()
        start = self._start
        elapsed = end["t"] - start["t"]
        busy_ticks = (end["total"] - start["total"]) - (end["idle"] - start["idle"])
        all_ticks = max(end["total"] - start["total"], 1)

        def pct(ticks: float) -> float:
            return round(100 * ticks / _TICK / elapsed, 1)

        machine = round(100 * busy_ticks / all_ticks * (os.cpu_count() or 1), 1)
        server = pct(end["server"] - start["server"])
        postgres = pct(end["postgres"] - start["postgres"])
        loadgen = round(100 * (end["loadgen"] - start["loadgen"]) / elapsed, 1)
        # Each worker's share, busiest first: shows whether the load is spread over the workers.
        shares = sorted(
            (pct(ticks - start["workers"].get(pid, 0)) for pid, ticks in end["workers"].items()),
            reverse=True,
        )
        return {
            "seconds": round(elapsed, 1),
            "worker_pcts": shares,
            "machine_busy_pct": machine,
            "server_pct": server,
            "postgres_pct": postgres,
            "loadgen_pct": loadgen,
            "other_pct": round(max(0.0, machine - server - postgres - loadgen), 1),
            "loadavg_end": round(end["load"], 2),
            "server_cpu_s": round((end["server"] - start["server"]) / _TICK, 2),
            "postgres_cpu_s": round((end["postgres"] - start["postgres"]) / _TICK, 2),
        }


def run_logged(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> str:
    """Run a command to completion; its output goes to `log` too; raise with the tail on failure."""
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-2000:]
        raise RuntimeError(f"{cmd[0]} failed ({result.returncode}):\n{tail}")
    return result.stdout
