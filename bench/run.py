"""The payflow benchmark (issue 8), start to finish: `bash bench/run.sh` runs this.

It creates a throw-away PostgreSQL database and Redis key prefix, seeds them, measures the asyncpg
floor, starts `payflow serve --workers 2` and drives it with wrk, repeats the purchase and product
scenarios with one worker and on the embedded default (SQLite, one worker, in-process cache), counts
round trips per request, then tears everything down and writes bench/results/<date>-<commit>.{json,md}
and the summary table in bench/README.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    PAYFLOW,
    REPO_DIR,
    CpuMeter,
    Server,
    run_logged,
    server_env,
)
from seed import PASSWORD, SeedSpec, seed

from payflow.config import Settings

RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
START_MARK = "<!-- bench:results:start -->"
END_MARK = "<!-- bench:results:end -->"

TARGET_FLOOR_RATIO = 0.75
TARGET_HOT_RATIO = 0.50
TARGET_GET_RPS = 3000
TARGET_P99_MS = 200
GATE_NOTE = " — at most 4 in flight per process (8 in all), the others wait in the client"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.id = uuid.uuid4().hex[:8]
        self.work = Path(tempfile.mkdtemp(prefix=f"payflow-bench-{self.id}-"))
        self.data = self.work / "data"
        self.db_name = f"payflow_bench_{self.id}"
        self.redis_prefix = f"payflow-bench-{self.id}:"
        self.pg_admin = args.pg_admin
        self.pg_url = args.pg_admin.rsplit("/", 1)[0] + "/" + self.db_name
        self.scenarios: list[dict[str, Any]] = []
        self.floors: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.db_created = False
        long, short, warm = args.duration, args.short_duration, args.warmup
        if args.smoke:
            long, short, warm = 4, 3, 1
        self.long, self.short, self.warm = long, short, warm

    # --- PostgreSQL and Redis lifecycle ------------------------------------------------------

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.pg_admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create_database(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.db_name}"'))
        self.db_created = True

    def drop_database(self) -> None:
        if self.db_created:
            asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            self.db_created = False

    def clear_redis(self, prefix: str) -> None:
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis.from_url(self.args.redis)
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            client.close()

    def pg_env(self) -> dict[str, str]:
        return server_env(
            database_url=self.pg_url,
            log_dir=self.work / "logs",
            redis_url=self.args.redis,
            redis_prefix=self.redis_prefix,
            external_gateway=True,
        )

    def settings(self, env: dict[str, str]) -> Settings:
        keep = {k: v for k, v in env.items() if k.isupper()}
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(keep)
            return Settings(_env_file=None)  # type: ignore[call-arg]
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # --- load generation -------------------------------------------------------------------

    def wrk(
        self,
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
        out = self.work / f"wrk-{len(self.scenarios)}-{scenario}.json"
        run_env = {
            **os.environ,
            "BENCH_DIR": str(BENCH_DIR),
            "BENCH_DATA": str(self.data),
            "BENCH_OUT": str(out),
            "BENCH_NONCE": f"{self.id}-{scenario}-{time.monotonic_ns()}",
            **(env or {}),
        }
        command = [
            "wrk",
            f"-t{self.args.wrk_threads}",
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
        self.scenarios.append(result)
        log(
            f"{backend}/{server.workers}w {scenario:<14} c{connections:<3} {result['rps']:>8.1f} req/s  "
            f"p50 {result['p50_ms']:>7.1f} ms  p99 {result['p99_ms']:>7.1f} ms  "
            f"errors {result['errors']} {result['error_breakdown'] or ''}  "
            f"(server {cpu['server_pct']}%, pg {cpu['postgres_pct']}%, other {cpu['other_pct']}%)"
        )
        return result

    def floor(
        self,
        variant: str,
        target: str,
        concurrency: int,
        duration: int,
        tag: str = "",
        gate: int = 0,
    ) -> None:
        out = self.work / f"floor-{variant}-{target}-{concurrency}{tag}.json"
        command = [
            sys.executable,
            str(BENCH_DIR / "floor.py"),
            "--dsn",
            self.pg_url,
            "--data",
            str(self.data),
            "--variant",
            variant,
            "--target",
            target,
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--warmup",
            str(self.warm),
            "--procs",
            str(self.args.floor_procs),
            "--gate",
            str(gate),
            "--out",
            str(out),
        ]
        meter = CpuMeter(None)
        run_logged(command, self.work / "floor.log", timeout=duration + 120)
        cpu = meter.stop()
        result = json.loads(out.read_text())
        result["id"] = f"floor-{variant}-{target}-c{concurrency}{tag}"
        result["cpu"] = cpu
        self.floors.append(result)
        log(
            f"floor {variant:<6} {target:<11} c{concurrency:<3} {result['rps']:>8.1f} tx/s   "
            f"p50 {result['p50_ms']:>7.1f} ms  p99 {result['p99_ms']:>7.1f} ms  errors {result['errors'] or 0}"
            f"  (machine busy {cpu['machine_busy_pct']}%)"
        )

    # --- parts -----------------------------------------------------------------------------

    def postgres(self) -> None:
        env = self.pg_env()
        log(f"PostgreSQL database {self.db_name}, Redis prefix {self.redis_prefix}")
        self.create_database()
        run_logged([PAYFLOW, "migrate"], self.work / "migrate.log", env=env)
        spec = self.spec()
        self.extra["seed_postgres"] = asyncio.run(
            seed(
                "postgresql+asyncpg://" + self.pg_url.split("://", 1)[1],
                self.data,
                spec,
                self.settings(env),
            )
        )
        log(f"seeded: {self.extra['seed_postgres']}")
        self.extra["settings"] = self.recorded_settings(env)
        self.extra["bcrypt"] = bcrypt_ceiling()
        log(f"bcrypt cost 12: {self.extra['bcrypt']}")

        if self.args.quick_only:
            self.quick(env)
            return
        if self.args.profile_only or self.args.cpu_only:
            if self.args.cpu_only:
                self.cpu_costs(env)
                for row in self.extra.get("cpu_per_request", []):
                    log(f"cpu: {row}")
            if self.args.profile_only:
                self.profile(env)
            return
        # The floor first, while no payflow server holds connections (max_connections is shared).
        L, S = self.long, self.short
        self.floor("multi", "uncontended", 64, L)
        for c in (8, 32, 64):
            self.floor("multi", "hot", c, S)
        # The same 64 clients, but at most 4 transactions per process in flight on the hot row.
        self.floor("multi", "hot", 64, S, tag="-gate4", gate=4)
        if not self.args.skip_single:
            self.floor("single", "uncontended", 64, S)
            for c in (8, 64):
                self.floor("single", "hot", c, S)
            self.floor("single", "hot", 64, S, tag="-gate4", gate=4)

        server = Server(env, 2, self.work / "server-pg-2.log")
        server.start()
        try:
            self.http_scenarios(server, "postgres", full=True)
        finally:
            server.stop()

        if not self.args.skip_one_worker:
            server = Server(env, 1, self.work / "server-pg-1.log")
            server.start()
            try:
                self.http_scenarios(server, "postgres", full=False)
            finally:
                server.stop()

        # The floor again: how much the machine drifted while payflow ran.
        self.floor("multi", "uncontended", 64, S, tag="-after")

        if not self.args.skip_trace:
            from roundtrips import trace

            host_port = self.pg_admin.split("@", 1)[1].split("/", 1)[0]
            pg_host, pg_port = [*host_port.split(":"), "5432"][:2]
            redis_hp = self.args.redis.split("://", 1)[1].split("/", 1)[0]
            r_host, r_port = [*redis_hp.split(":"), "6379"][:2]
            log("counting round trips per request (one worker behind counting proxies)")
            self.extra["round_trips"] = trace(
                database=self.db_name,
                pg_host=pg_host,
                pg_port=int(pg_port),
                redis_host=r_host,
                redis_port=int(r_port),
                data_dir=self.data,
                work_dir=self.work,
                password=PASSWORD,
            )
        if not self.args.skip_cpu:
            self.cpu_costs(env)
        if self.args.profile:
            self.profile(env)
        if not self.args.skip_audit:
            self.extra["audit_postgres"] = audit(env, self.work)
            log(
                f"payflow audit after the PostgreSQL runs: {self.extra['audit_postgres']['summary']}"
            )

    QUICK: ClassVar[dict[str, tuple[str, dict[str, str]]]] = {
        "s1": ("purchase.lua", {}),
        "s1-key": ("purchase.lua", {"BENCH_IDEMPOTENCY": "1"}),
        "s2-c64": ("purchase.lua", {"BENCH_PRODUCTS": "hot.txt"}),
        "s3-list": ("products_list.lua", {}),
        "s3-get": ("product_get.lua", {}),
        "s4": ("deposit.lua", {}),
    }

    def quick(self, env: dict[str, str]) -> None:
        """The floor and a few scenarios (`--quick-scenarios`, in that order, repeats allowed) at
        short durations on one 2-worker server, with each worker's CPU share: a quick A/B while
        working (nothing recorded)."""
        self.floor("multi", "uncontended", 64, self.short)
        server = Server(env, 2, self.work / "server-quick.log")
        server.start()
        try:
            for scenario in self.args.quick_scenarios.split(","):
                script, extra = self.QUICK[scenario]
                self.wrk(
                    server,
                    "warm",
                    "",
                    script,
                    64,
                    self.warm,
                    extra,
                    backend="postgres",
                    record=False,
                )
                self.wrk(
                    server, scenario, scenario, script, 64, self.short, extra, backend="postgres"
                )
                log(f"    worker CPU shares %: {self.scenarios[-1]['cpu']['worker_pcts']}")
        finally:
            server.stop()

    def http_scenarios(self, server: Server, backend: str, *, full: bool) -> None:
        L, S, W = self.long, self.short, self.warm
        hot = {"BENCH_PRODUCTS": "hot.txt"}
        self.wrk(server, "warm", "", "purchase.lua", 64, 2 * W, backend=backend, record=False)
        self.wrk(
            server,
            "s1",
            "wallet purchase, uncontended",
            "purchase.lua",
            64,
            L if full else S,
            backend=backend,
        )
        if full:
            self.wrk(
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
            self.wrk(
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
            self.wrk(
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
            self.wrk(server, "warm", "", "products_list.lua", 64, W, backend=backend, record=False)
            self.wrk(
                server,
                "s3-list",
                "GET /products (cached)",
                "products_list.lua",
                64,
                S,
                backend=backend,
            )
        self.wrk(server, "warm", "", "product_get.lua", 64, W, backend=backend, record=False)
        self.wrk(
            server,
            "s3-get",
            "GET /products/{id} (cached)",
            "product_get.lua",
            64,
            S,
            backend=backend,
        )
        if full and backend == "postgres":
            self.wrk(
                server,
                "s4",
                "POST /wallet/deposit, Idempotency-Key",
                "deposit.lua",
                64,
                S,
                backend=backend,
            )
            self.wrk(
                server,
                "s5",
                "POST /auth/login (bcrypt 12)",
                "login.lua",
                8,
                S,
                {"BENCH_PASSWORD": PASSWORD},
                backend=backend,
            )

    def cpu_costs(self, env: dict[str, str]) -> None:
        """One client, one request at a time: CPU per request of the server and of PostgreSQL, and
        the floor's client CPU per transaction. CPU time barely depends on what else the machine
        runs, so these are the figures to compare when the machine is busy."""
        seconds = 2 if self.args.smoke else self.args.cpu_duration
        self.floor("multi", "uncontended", 1, seconds, tag="-seq")
        server = Server(env, 1, self.work / "server-pg-cpu.log")
        server.start()
        rows = []
        try:
            for name, script, extra in (
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
            ):
                self.wrk(server, "warm", "", script, 1, 2, extra, backend="postgres", record=False)
                r = self.wrk(
                    server, "seq", name, script, 1, seconds, extra, backend="postgres", record=False
                )
                ok = max(r["ok"], 1)
                rows.append(
                    {
                        "request": name,
                        "rps": r["rps"],
                        "p50_ms": r["p50_ms"],
                        "errors": r["errors"],
                        "server_cpu_ms": round(r["cpu"]["server_cpu_s"] * 1000 / ok, 2),
                        "postgres_cpu_ms": round(r["cpu"]["postgres_cpu_s"] * 1000 / ok, 2),
                    }
                )
                log(
                    f"one client: {name:<42} server {rows[-1]['server_cpu_ms']:.2f} ms CPU/req, "
                    f"PostgreSQL {rows[-1]['postgres_cpu_ms']:.2f} ms, p50 {r['p50_ms']} ms"
                )
        finally:
            server.stop()
        self.extra["cpu_per_request"] = rows

    def sqlite(self) -> None:
        folder = self.work / "sqlite"
        folder.mkdir()
        db_file = folder / "payflow.db"
        env = server_env(database_url=f"sqlite:///{db_file}", log_dir=self.work / "logs")
        run_logged([PAYFLOW, "migrate"], self.work / "migrate.log", env=env)
        self.extra["seed_sqlite"] = asyncio.run(
            seed(f"sqlite+aiosqlite:///{db_file}", self.data, self.spec(), self.settings(env))
        )
        log(f"SQLite seeded: {self.extra['seed_sqlite']}")
        server = Server(env, 1, self.work / "server-sqlite.log")
        server.start()
        try:
            self.http_scenarios(server, "sqlite", full=False)
        finally:
            server.stop()
        if not self.args.skip_audit:
            self.extra["audit_sqlite"] = audit(env, self.work)
            log(f"payflow audit after the SQLite runs: {self.extra['audit_sqlite']['summary']}")

    def profile(self, env: dict[str, str]) -> None:
        """py-spy on both workers during an uncontended purchase run (figures not recorded)."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            log("py-spy not installed (pip install py-spy): no profile")
            return
        server = Server(env, 2, self.work / "server-profile.log")
        server.start()
        try:
            workers = [
                int(p)
                for p in subprocess.run(
                    ["pgrep", "-P", str(server.pid())], capture_output=True, text=True, check=False
                ).stdout.split()
            ]
            self.wrk(
                server,
                "warm",
                "",
                self.args.profile_script,
                64,
                self.warm,
                backend="postgres",
                record=False,
            )
            outputs = [self.work / f"profile-{pid}.txt" for pid in workers]
            spies = [
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(self.short),
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid, out in zip(workers, outputs, strict=True)
            ]
            self.wrk(
                server,
                "profile",
                "",
                self.args.profile_script,
                64,
                self.short,
                backend="postgres",
                record=False,
            )
            for process in spies:
                process.wait(timeout=60)
            stacks = [
                line for out in outputs if out.exists() for line in out.read_text().splitlines()
            ]
            self.extra["profile"] = summarize_profile(stacks)
            (self.work / "profile.collapsed").write_text("\n".join(stacks))
            log(f"profile: {self.extra['profile']['by_package']}")
        finally:
            server.stop()

    def spec(self) -> SeedSpec:
        if self.args.smoke:
            return SeedSpec(merchants=100, buyers=1000, catalogue=200, logins=32)
        return SeedSpec()

    def recorded_settings(self, env: dict[str, str]) -> dict[str, Any]:
        settings = self.settings(env)
        return {
            "db_pool_size": settings.db_pool_size,
            "db_max_overflow": settings.db_max_overflow,
            "bcrypt_rounds": settings.bcrypt_rounds,
            "rate_limits_enabled": settings.rate_limits_enabled,
            "log_level": settings.log_level,
            "environment": str(settings.environment),
        }

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.drop_database()
        self.clear_redis(self.redis_prefix)
        self.clear_redis("payflow-bench-trace-")
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log(f"work folder kept: {self.work}")


def bcrypt_ceiling() -> dict[str, float]:
    """Time bcrypt.checkpw at cost 12 in one process: CPU seconds per check → checks/s per core."""
    code = (
        "import bcrypt, time, json\n"
        "h = bcrypt.hashpw(b'bench-password-1234', bcrypt.gensalt(12))\n"
        "n = 8; w = time.perf_counter(); c = time.process_time()\n"
        "for _ in range(n): bcrypt.checkpw(b'bench-password-1234', h)\n"
        "print(json.dumps([(time.perf_counter() - w) / n, (time.process_time() - c) / n]))\n"
    )
    wall, cpu = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    cores = os.cpu_count() or 1
    return {
        "checkpw_cpu_ms": round(cpu * 1000, 1),
        "checkpw_wall_ms": round(wall * 1000, 1),
        "per_core_per_s": round(1 / cpu, 2),
        "cores": cores,
        "ceiling_per_s": round(cores / cpu, 2),
    }


def audit(env: dict[str, str], work: Path) -> dict[str, Any]:
    result = subprocess.run(
        [PAYFLOW, "audit", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=work,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = {"raw": result.stdout[-2000:] + result.stderr[-2000:]}
    ok = result.returncode == 0
    return {
        "ok": ok,
        "summary": "all invariants hold" if ok else "VIOLATIONS (see JSON)",
        "report": report if not ok else None,
    }


def summarize_profile(stacks: list[str]) -> dict[str, Any]:
    """Where the workers' CPU goes: self time by package, and inclusive time of notable frames."""
    total = 0
    by_package: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    packages = (
        ("sqlalchemy", "sqlalchemy"),
        ("asyncpg", "asyncpg"),
        ("pydantic", "pydantic"),
        ("fastapi", "fastapi"),
        ("starlette", "starlette"),
        ("uvicorn", "uvicorn"),
        ("structlog", "logging"),
        ("/logging/", "logging"),
        ("redis", "redis"),
        ("jwt", "jwt"),
        ("payflow", "payflow"),
        ("asyncio", "asyncio"),
        ("uvloop", "asyncio"),
        ("json", "json"),
        ("prometheus", "metrics"),
        ("anyio", "anyio"),
    )
    for line in stacks:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaf = frames[-1]
        package = next((name for needle, name in packages if needle in leaf), "other")
        by_package[package] = by_package.get(package, 0) + count
        seen = set()
        for frame in frames:
            name = frame.split(" (")[0]
            where = frame.split(" (")[-1].rstrip(")")
            key = f"{name} ({'/'.join(where.split('/')[-2:])})"
            if key not in seen:
                seen.add(key)
                inclusive[key] = inclusive.get(key, 0) + count
    top = sorted(inclusive.items(), key=lambda kv: -kv[1])[:45]
    return {
        "samples": total,
        "by_package": {
            k: round(100 * v / max(total, 1), 1)
            for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])
        },
        "top_inclusive": [[k, round(100 * v / max(total, 1), 1)] for k, v in top],
    }


# --- report ------------------------------------------------------------------------------------


def machine_info(pg_admin: str, redis_url: str) -> dict[str, Any]:
    def cmd(args: list[str]) -> str:
        try:
            out = subprocess.run(
                args, capture_output=True, text=True, timeout=20, check=False, cwd=REPO_DIR
            )
            return (out.stdout or out.stderr).strip()
        except OSError:
            return "?"

    async def pg() -> dict[str, str]:
        conn = await asyncpg.connect(pg_admin)
        try:
            info = {"version": await conn.fetchval("SHOW server_version")}
            for name in (
                "fsync",
                "synchronous_commit",
                "shared_buffers",
                "max_connections",
                "wal_level",
            ):
                info[name] = await conn.fetchval(f"SHOW {name}")
            return info
        finally:
            await conn.close()

    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    try:
        client = redis.Redis.from_url(redis_url)
        redis_version = client.info("server")["redis_version"]
        client.close()
    except redis.RedisError:
        redis_version = "?"
    commit = cmd(["git", "rev-parse", "--short", "HEAD"])
    dirty = cmd(["git", "status", "--porcelain", "--", "src"])
    fingerprint = hashlib.sha256()
    for path in sorted((REPO_DIR / "src").rglob("*.py")):
        fingerprint.update(
            path.relative_to(REPO_DIR).as_posix().encode() + b"\0" + path.read_bytes()
        )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": asyncio.run(pg()),
        "redis": redis_version,
        "wrk": cmd(["wrk", "--version"]).splitlines()[0] if cmd(["wrk", "--version"]) else "?",
        "payflow_commit": commit,
        "src_modified_files": len([line for line in dirty.splitlines() if line.strip()]),
        "src_fingerprint": fingerprint.hexdigest()[:12],
        "loadavg_start": os.getloadavg(),
    }


def quiet_check(wait: float) -> dict[str, float]:
    """How busy the machine is before we start (others' work skews every figure); optionally wait."""
    deadline = time.monotonic() + wait
    while True:
        meter = CpuMeter(None)
        time.sleep(3)
        busy = meter.stop()["machine_busy_pct"]
        if busy < 25 or time.monotonic() >= deadline:
            return {"busy_pct_before_start": busy}
        log(f"machine busy {busy}% of 200% before start; waiting for it to calm down")
        time.sleep(10)


def find(
    results: list[dict[str, Any]], sid: str, backend: str = "postgres", workers: int = 2
) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in results
            if r["id"] == sid and r["backend"] == backend and r["workers"] == workers
        ),
        None,
    )


def floor_of(floors: list[dict[str, Any]], fid: str) -> dict[str, Any] | None:
    return next((f for f in floors if f["id"] == fid), None)


def evaluate(report: dict[str, Any]) -> None:
    scenarios, floors = report["scenarios"], report["floors"]
    before = floor_of(floors, "floor-multi-uncontended-c64")
    after = floor_of(floors, "floor-multi-uncontended-c64-after")
    rates = [f["rps"] for f in (before, after) if f]
    floor_unc = sum(rates) / len(rates) if rates else None
    report["floor_uncontended_c64_mean"] = floor_unc
    single = floor_of(floors, "floor-single-uncontended-c64")
    for result in scenarios:
        floor = None
        if result["id"] in ("s1", "s1-key"):
            floor = floor_unc
            result["floor_id"] = "floor-multi-uncontended-c64 (mean of before and after)"
            if single:
                result["ratio_to_single_statement"] = round(result["rps"] / single["rps"], 3)
        elif result["id"].startswith("s2-c"):
            f = floor_of(floors, f"floor-multi-hot-c{result['concurrency']}")
            floor = f["rps"] if f else None
            result["floor_id"] = f["id"] if f else None
        if floor and result["backend"] == "postgres":
            result["floor_rps"] = round(floor, 1)
            result["ratio_to_floor"] = round(result["rps"] / floor, 3)
        if result["id"] == "s5":
            ceiling = report["extra"]["bcrypt"]["ceiling_per_s"]
            result["ceiling_rps"] = ceiling
            result["ratio_to_ceiling"] = round(result["rps"] / ceiling, 3)

    s1 = find(scenarios, "s1")
    hot = {c: find(scenarios, f"s2-c{c}") for c in (8, 32, 64)}
    get = find(scenarios, "s3-get")
    targets = []
    if s1 and floor_unc:
        ratio = s1["rps"] / floor_unc
        targets.append(
            {
                "target": "uncontended purchases ≥ 75 % of the asyncpg floor, 0 errors",
                "measured": f"{s1['rps']:.0f} / {floor_unc:.0f} = {ratio:.0%}, {s1['errors']} errors",
                "met": ratio >= TARGET_FLOOR_RATIO and s1["errors"] == 0,
            }
        )
    if s1 and all(hot.values()):
        h8, h64 = hot[8], hot[64]
        worst = min(h["rps"] for h in hot.values() if h)
        errors = sum(h["errors"] for h in hot.values() if h)
        targets.append(
            {
                "target": "hot product ≥ 50 % of uncontended (8, 32 and 64 clients), 0 errors",
                "measured": f"min {worst:.0f} / {s1['rps']:.0f} = {worst / s1['rps']:.0%}, {errors} errors",
                "met": worst >= TARGET_HOT_RATIO * s1["rps"] and errors == 0,
            }
        )
        targets.append(
            {
                "target": "hot product: throughput at 64 clients ≥ at 8",
                "measured": f"{h64['rps']:.0f} at 64 vs {h8['rps']:.0f} at 8",
                "met": h64["rps"] >= h8["rps"],
            }
        )
    if get:
        targets.append(
            {
                "target": "cached GET /products/{id} ≥ 3,000 req/s with 2 workers",
                "measured": f"{get['rps']:.0f} req/s, {get['errors']} errors",
                "met": get["rps"] >= TARGET_GET_RPS and get["errors"] == 0,
            }
        )
    if s1:
        targets.append(
            {
                "target": "p99 of uncontended purchases at 64 clients ≤ 200 ms",
                "measured": f"{s1['p99_ms']:.0f} ms",
                "met": s1["p99_ms"] <= TARGET_P99_MS,
            }
        )
    report["targets"] = targets


def fmt_errors(result: dict[str, Any]) -> str:
    if not result.get("errors"):
        return "0"
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(result["error_breakdown"].items()))
    return f"{result['errors']} ({parts})"


def markdown(report: dict[str, Any], *, headline: bool = True) -> str:
    m, load, extra = report["machine"], report["load"], report["extra"]
    out: list[str] = []
    if headline:
        out.append(f"# payflow benchmark, {report['started']} (commit {m['payflow_commit']})\n")
    out.append(
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"PostgreSQL {m['postgresql']['version']} (fsync {m['postgresql']['fsync']}, synchronous_commit "
        f"{m['postgresql']['synchronous_commit']}, shared_buffers {m['postgresql']['shared_buffers']}), "
        f"Redis {m['redis']}, Python {m['python']}, {m['wrk']}. payflow commit {m['payflow_commit']} "
        f"(+{m['src_modified_files']} uncommitted files under src/, src fingerprint {m['src_fingerprint']}). "
        f"Server settings: {extra.get('settings')}.\n"
    )
    out.append(
        f"Load: wrk, {load['wrk_threads']} thread, keep-alive connections = concurrency, 10 s timeout; "
        f"{load['long_s']} s for the uncontended purchase and the floor, {load['short_s']} s for every other "
        f"scenario, each after a {load['warmup_s']} s warm-up; data: {extra.get('seed_postgres', {}).get('buyers')} "
        f"buyers, {extra.get('seed_postgres', {}).get('merchants')} merchants x "
        f"{extra.get('seed_postgres', {}).get('products_per_merchant')} products, one hot product. "
        f"The load generator shares the 2 cores with the server and PostgreSQL. Machine busy before start: "
        f"{report['quiet']['busy_pct_before_start']}% of 200%; mean CPU of other processes during the "
        f"scenarios: {report['noise_other_pct']}% of 200%.\n"
    )
    out.append("## PostgreSQL + Redis, `payflow serve --workers 2`\n")
    out.append(
        "| scenario | clients | req/s | p50 ms | p99 ms | errors (non-2xx) | floor /s | ratio | server CPU ms/req | CPU server / pg / other % |"
    )
    out.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for r in report["scenarios"]:
        if r["backend"] != "postgres" or r["workers"] != 2:
            continue
        floor = (
            f"{r['floor_rps']:.0f}"
            if r.get("floor_rps")
            else (f"{r['ceiling_rps']:.1f} (bcrypt ceiling)" if r.get("ceiling_rps") else "")
        )
        ratio = r.get("ratio_to_floor") or r.get("ratio_to_ceiling")
        cpu = r["cpu"]
        out.append(
            f"| {r['id']}: {r['name']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{fmt_errors(r)} | {floor} | {f'{ratio:.0%}' if ratio else ''} | {r['server_cpu_ms_per_ok']:.2f} | "
            f"{cpu['server_pct']:.0f} / {cpu['postgres_pct']:.0f} / {cpu['other_pct']:.0f} |"
        )
    out.append("")
    out.append("## The floor: the same purchase transaction with asyncpg, no HTTP\n")
    out.append("| floor | target | clients | tx/s | p50 ms | p99 ms | errors | retries |")
    out.append("|---|---|---:|---:|---:|---:|---|---:|")
    for f in report["floors"]:
        errors = f["errors"] or {}
        label = (
            "multi-statement (8 round trips)"
            if f["variant"] == "multi"
            else "one statement (1 round trip)"
        )
        out.append(
            f"| {label}{' — again after the HTTP runs' if f['id'].endswith('after') else ''}"
            f"{' — one client at a time' if f['id'].endswith('seq') else ''}"
            f"{GATE_NOTE if f.get('gate_per_process') else ''} | {f['target']} | "
            f"{f['concurrency']} | {f['rps']:.1f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | "
            f"{sum(errors.values()) if errors else 0}{' ' + str(errors) if errors else ''} | {f['retries']} |"
        )
    out.append("")
    one = [r for r in report["scenarios"] if r["backend"] == "postgres" and r["workers"] == 1]
    if one:
        out.append("## One worker vs two (PostgreSQL + Redis)\n")
        out.append(
            "| scenario | clients | 1 worker req/s | p99 ms | 2 workers req/s | p99 ms | 2 / 1 |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in one:
            two = find(report["scenarios"], r["id"])
            if two:
                out.append(
                    f"| {r['id']}: {r['name']} | {r['concurrency']} | {r['rps']:.1f} | {r['p99_ms']:.1f} | "
                    f"{two['rps']:.1f} | {two['p99_ms']:.1f} | {two['rps'] / max(r['rps'], 0.1):.2f} |"
                )
        out.append("")
    lite = [r for r in report["scenarios"] if r["backend"] == "sqlite"]
    if lite:
        out.append("## Embedded default: SQLite, in-process cache, one worker (no target)\n")
        out.append(
            "| scenario | clients | req/s | p50 ms | p99 ms | errors (non-2xx) | server CPU ms/req |"
        )
        out.append("|---|---:|---:|---:|---:|---|---:|")
        for r in lite:
            out.append(
                f"| {r['id']}: {r['name']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {fmt_errors(r)} | {r['server_cpu_ms_per_ok']:.2f} |"
            )
        out.append("")
    if report.get("targets"):
        out.append("## Targets of issue 8\n")
        out.append("| target | measured | |")
        out.append("|---|---|---|")
        for t in report["targets"]:
            out.append(
                f"| {t['target']} | {t['measured']} | {'met' if t['met'] else '**not met**'} |"
            )
        out.append("")
    trips = extra.get("round_trips")
    if trips:
        out.append("## Round trips per request (one request at a time, counted by proxies)\n")
        out.append("| request | PostgreSQL round trips | statements | Redis commands |")
        out.append("|---|---:|---|---|")
        for name, t in trips.items():
            statements = ", ".join(
                f"{k}{'' if v == 1 else f' x{v:g}'}" for k, v in t["pg_statements"].items()
            )
            redis_cmds = ", ".join(
                f"{k}{'' if v == 1 else f' x{v:g}'}" for k, v in t["redis"].items()
            )
            out.append(f"| {name} | {t['pg_round_trips']:g} | {statements} | {redis_cmds} |")
        out.append("")
    costs = extra.get("cpu_per_request")
    if costs:
        seq = floor_of(report["floors"], "floor-multi-uncontended-c1-seq")
        out.append("## CPU per request, one client at a time (one worker)\n")
        out.append(
            "CPU time is what the other load on the machine moves least: these figures compare "
            "across runs. The floor's row is its client's CPU per transaction (asyncpg, no HTTP).\n"
        )
        out.append("| request | req/s | p50 ms | server CPU ms/req | PostgreSQL CPU ms/req |")
        out.append("|---|---:|---:|---:|---:|")
        if seq:
            out.append(
                f"| asyncpg floor, multi-statement purchase (client CPU) | {seq['rps']:.1f} | "
                f"{seq['p50_ms']:.2f} | {seq.get('client_cpu_ms_per_tx', 0):.2f} | |"
            )
        for row in costs:
            out.append(
                f"| {row['request']} | {row['rps']:.1f} | {row['p50_ms']:.2f} | "
                f"{row['server_cpu_ms']:.2f} | {row['postgres_cpu_ms']:.2f} |"
            )
        out.append("")
    bc = extra.get("bcrypt")
    if bc:
        out.append(
            f"bcrypt cost 12: checkpw takes {bc['checkpw_cpu_ms']} ms of CPU ({bc['checkpw_wall_ms']} ms wall) "
            f"→ {bc['per_core_per_s']}/s per core, ceiling {bc['ceiling_per_s']}/s on {bc['cores']} cores.\n"
        )
    for key in ("audit_postgres", "audit_sqlite"):
        if key in extra:
            out.append(
                f"`payflow audit` after the {key.split('_')[1]} runs: {extra[key]['summary']}.  "
            )
    out.append("")
    return "\n".join(out)


def update_readme(summary: str, result_name: str, label: str = "Latest run") -> None:
    if not README.exists():
        return
    text = README.read_text()
    if START_MARK not in text or END_MARK not in text:
        return
    head, rest = text.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    summary = ("\n" + summary).replace("\n## ", "\n### ").lstrip("\n")
    block = (
        f"{START_MARK}\n_{label}: [`results/{result_name}.md`](results/{result_name}.md)_\n\n"
        f"{summary}\n{END_MARK}"
    )
    README.write_text(head + block + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description="payflow benchmark (issue 8)")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL with the right to CREATE DATABASE",
    )
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--duration", type=int, default=20, help="seconds: uncontended purchases and the floor"
    )
    parser.add_argument(
        "--short-duration", type=int, default=15, help="seconds: every other scenario"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--floor-procs", type=int, default=2)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds per scenario, small data: checks the suite",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-one-worker", action="store_true")
    parser.add_argument("--skip-single", action="store_true", help="skip the one-statement floor")
    parser.add_argument("--skip-trace", action="store_true")
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument(
        "--skip-cpu", action="store_true", help="skip the one-client CPU-per-request step"
    )
    parser.add_argument(
        "--cpu-duration", type=int, default=3, help="seconds per one-client CPU measurement"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also py-spy both workers during purchases"
    )
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="only seed and profile purchases (no figures, no results): a quick look while working",
    )
    parser.add_argument(
        "--profile-script",
        default="purchase.lua",
        help="the wrk script (bench/wrk/) driving the load while profiling",
    )
    parser.add_argument(
        "--quick-only",
        action="store_true",
        help="only seed, the floor, and --quick-scenarios on 2 workers (no results written)",
    )
    parser.add_argument(
        "--quick-scenarios",
        default="s1,s2-c64,s3-get",
        help=f"comma-separated, in order, repeats allowed: {', '.join(Bench.QUICK)}",
    )
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="only seed and measure CPU per request, one client at a time (no results written)",
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="wait up to N s for an idle machine"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (logs, raw outputs)"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print, but write no results and leave the README"
    )
    parser.add_argument(
        "--render",
        type=Path,
        help="only re-render bench/README.md's summary from a stored results/<run>.json",
    )
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        update_readme(markdown(report, headline=False), args.render.stem, "Run shown")
        print(markdown(report))
        return

    started = datetime.now(UTC)
    bench = Bench(args)
    quiet = quiet_check(args.wait_quiet)
    machine = machine_info(args.pg_admin, args.redis)
    log(
        f"machine: {machine['nproc']} cores, busy {quiet['busy_pct_before_start']}% before start, "
        f"commit {machine['payflow_commit']}, work folder {bench.work}"
    )
    try:
        bench.postgres()
        if args.profile_only or args.cpu_only or args.quick_only:
            return
        if not args.skip_sqlite:
            bench.sqlite()
    finally:
        bench.cleanup()
    others = [r["cpu"]["other_pct"] for r in bench.scenarios]
    report: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round((datetime.now(UTC) - started).total_seconds()),
        "machine": machine,
        "quiet": quiet,
        "noise_other_pct": round(sum(others) / len(others), 1) if others else None,
        "load": {
            "wrk_threads": args.wrk_threads,
            "long_s": bench.long,
            "short_s": bench.short,
            "warmup_s": bench.warm,
            "floor_processes": args.floor_procs,
            "smoke": args.smoke,
        },
        "scenarios": bench.scenarios,
        "floors": bench.floors,
        "extra": bench.extra,
    }
    evaluate(report)
    text = markdown(report)
    print("\n" + text)
    if args.no_write or args.smoke:
        log("results not written (--no-write or --smoke)")
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    name = f"{started:%Y-%m-%d}-{machine['payflow_commit']}"
    suffix = 1
    while (RESULTS_DIR / f"{name}.json").exists():
        suffix += 1
        name = f"{started:%Y-%m-%d}-{machine['payflow_commit']}-{suffix}"
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(text + "\n")
    update_readme(markdown(report, headline=False), name)
    log(f"results: bench/results/{name}.json and .md; total {report['seconds']} s")


if __name__ == "__main__":
    main()
