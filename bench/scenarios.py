"""The wrk scenarios of the benchmark: what each one is and how one is run.

A scenario is an id (s1, s1-key, s2-c8/32/64, s3-list, s3-get, s4, s5: the ids of bench/README.md
and of the results), a name, a wrk script of bench/wrk/, a number of clients (keep-alive
connections), a duration and the extra environment the script reads (BENCH_PRODUCTS,
BENCH_IDEMPOTENCY, BENCH_PASSWORD). `http_scenarios` is the sequence run against one server,
`QUICK` the scenarios `--quick-only` can pick, `CPU_REQUESTS` the one-client CPU table's requests,
and `wrk` runs one scenario and measures it (requests, latency, statuses, CPU of the server and of
PostgreSQL over the window). orchestrate.py decides when and against which server.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

from common import BENCH_DIR, CpuMeter, Server
from report import log, scenario_line
from seed import PASSWORD

if TYPE_CHECKING:
    from orchestrate import Bench

# `--quick-only`: the scenarios it may run (`--quick-scenarios`), each at 64 clients for
# --short-duration after a warm-up: id → (wrk script, extra environment).
QUICK: dict[str, tuple[str, dict[str, str]]] = {
    "s1": ("purchase.lua", {}),
    "s1-key": ("purchase.lua", {"BENCH_IDEMPOTENCY": "1"}),
    "s2-c64": ("purchase.lua", {"BENCH_PRODUCTS": "hot.txt"}),
    "s3-list": ("products_list.lua", {}),
    "s3-get": ("product_get.lua", {}),
    "s4": ("deposit.lua", {}),
}

# The one-client CPU table: (request, wrk script, extra environment), one client, one worker.
CPU_REQUESTS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("GET /health/live (HTTP stack only)", "health.lua", {}),
    ("GET /products/{id} (cached)", "product_get.lua", {}),
    ("POST /orders (wallet)", "purchase.lua", {}),
    (
        "POST /orders (wallet, Idempotency-Key)",
        "purchase.lua",
        {"BENCH_IDEMPOTENCY": "1"},
    ),
    (
        "POST /orders (wallet, hot product)",
        "purchase.lua",
        {"BENCH_PRODUCTS": "hot.txt"},
    ),
    ("POST /wallet/deposit (Idempotency-Key)", "deposit.lua", {}),
)


def wrk(
    bench: Bench,
    server: Server,
    scenario: str,
    name: str,
    script: str,
    connections: int,
    duration: int,
    env: dict[str, str] | None = None,
    *,
    backend: str,
    record: bool = True,
) -> dict[str, Any]:
    """Run one scenario with wrk against `server`; unless `record` is false (warm-ups, the CPU
    table, profiling), add its result to the run and print its line."""
    out = bench.work / f"wrk-{len(bench.scenarios)}-{scenario}.json"
    run_env = {
        **os.environ,
        "BENCH_DIR": str(BENCH_DIR),
        "BENCH_DATA": str(bench.data),
        "BENCH_OUT": str(out),
        "BENCH_NONCE": f"{bench.id}-{scenario}-{time.monotonic_ns()}",
        **(env or {}),
    }
    command = [
        "wrk",
        f"-t{bench.args.wrk_threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH_DIR / "wrk" / script),
        server.url,
    ]
    meter = CpuMeter(server.pid())
    subprocess.run(command, env=run_env, capture_output=True, check=True, timeout=duration + 60)
    cpu = meter.stop()
    raw = json.loads(out.read_text())
    seconds = raw["duration_us"] / 1e6
    statuses = raw["statuses"]
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    failed = {status: n for status, n in statuses.items() if not status.startswith("2")}
    sockets = {k: v for k, v in raw["socket_errors"].items() if v}
    lat = raw["latency_us"]
    result = {
        "id": scenario,
        "name": name,
        "backend": backend,
        "workers": server.workers,
        "concurrency": connections,
        "duration_s": round(seconds, 1),
        "requests": raw["requests"],
        "ok": ok,
        "rps": round(ok / seconds, 1),
        "p50_ms": round(lat["p50"] / 1000, 1),
        "p90_ms": round(lat["p90"] / 1000, 1),
        "p99_ms": round(lat["p99"] / 1000, 1),
        "p999_ms": round(lat["p999"] / 1000, 1),
        "max_ms": round(lat["max"] / 1000, 1),
        "statuses": statuses,
        "errors": sum(failed.values()) + sum(sockets.values()),
        "error_breakdown": {**failed, **{f"socket {k}": v for k, v in sockets.items()}},
        "cpu": cpu,
        "server_cpu_ms_per_ok": round(cpu["server_cpu_s"] * 1000 / max(ok, 1), 2),
    }
    if not record:
        return result
    bench.scenarios.append(result)
    log(scenario_line(result))
    return result


def http_scenarios(bench: Bench, server: Server, backend: str, *, full: bool) -> None:
    """The scenarios against one server, each after a warm-up. `full`: all of them (PostgreSQL,
    2 workers); otherwise the purchase and product ones (1 worker, and SQLite)."""
    L, S, W = bench.long, bench.short, bench.warm
    hot = {"BENCH_PRODUCTS": "hot.txt"}
    wrk(bench, server, "warm", "", "purchase.lua", 64, 2 * W, backend=backend, record=False)
    wrk(
        bench,
        server,
        "s1",
        "wallet purchase, uncontended",
        "purchase.lua",
        64,
        L if full else S,
        backend=backend,
    )
    if full:
        wrk(
            bench,
            server,
            "s1-key",
            "wallet purchase, uncontended, Idempotency-Key",
            "purchase.lua",
            64,
            S,
            {"BENCH_IDEMPOTENCY": "1"},
            backend=backend,
        )
    for c in (8, 32, 64) if full else (64,):
        wrk(
            bench,
            server,
            "warm",
            "",
            "purchase.lua",
            c,
            max(1, W // 2),
            hot,
            backend=backend,
            record=False,
        )
        wrk(
            bench,
            server,
            f"s2-c{c}",
            "wallet purchase, one hot product",
            "purchase.lua",
            c,
            S,
            hot,
            backend=backend,
        )
    if full or backend == "sqlite":
        wrk(bench, server, "warm", "", "products_list.lua", 64, W, backend=backend, record=False)
        wrk(
            bench,
            server,
            "s3-list",
            "GET /products (cached)",
            "products_list.lua",
            64,
            S,
            backend=backend,
        )
    wrk(bench, server, "warm", "", "product_get.lua", 64, W, backend=backend, record=False)
    wrk(
        bench,
        server,
        "s3-get",
        "GET /products/{id} (cached)",
        "product_get.lua",
        64,
        S,
        backend=backend,
    )
    if full and backend == "postgres":
        wrk(
            bench,
            server,
            "s4",
            "POST /wallet/deposit, Idempotency-Key",
            "deposit.lua",
            64,
            S,
            backend=backend,
        )
        wrk(
            bench,
            server,
            "s5",
            "POST /auth/login (bcrypt 12)",
            "login.lua",
            8,
            S,
            {"BENCH_PASSWORD": PASSWORD},
            backend=backend,
        )
