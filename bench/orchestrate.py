"""The benchmark's run, start to finish: `bash bench/run.sh` and `python bench/run.py` come here.

It creates a throw-away PostgreSQL database and Redis key prefix, seeds them, measures the asyncpg
floor, starts `payflow serve --workers 2` and drives it with the wrk scenarios (scenarios.py),
repeats the purchase and product scenarios with one worker and on the embedded default (SQLite, one
worker, in-process cache), counts round trips per request, measures CPU per request with one
client, runs `payflow audit`, then tears everything down and hands the results to report.py. Also
the command line (`main`): its flags and the modes `--quick-only`, `--cpu-only`, `--profile-only`
and `--render`. See bench/README.md.
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
from typing import Any

import asyncpg
import redis
from common import (
    BENCH_DIR,
    PAYFLOW,
    REPO_DIR,
    CpuMeter,
    Server,
    run_logged,
    server_env,
)
from report import assemble, cpu_line, floor_line, log, publish, render
from scenarios import CPU_REQUESTS, QUICK, http_scenarios, wrk
from seed import PASSWORD, SeedSpec, seed

from payflow.config import Settings


class Bench:
    """One run: its database, Redis prefix and work folder, its durations, and what it measured
    (`scenarios`, `floors`, `extra`: what report.py turns into the results)."""

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

    # --- load generation (the wrk scenarios: scenarios.py) -----------------------------------

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
        log(floor_line(result))

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
            http_scenarios(self, server, "postgres", full=True)
        finally:
            server.stop()

        if not self.args.skip_one_worker:
            server = Server(env, 1, self.work / "server-pg-1.log")
            server.start()
            try:
                http_scenarios(self, server, "postgres", full=False)
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

    def quick(self, env: dict[str, str]) -> None:
        """The floor and a few scenarios (`--quick-scenarios`, in that order, repeats allowed) at
        short durations on one 2-worker server, with each worker's CPU share: a quick A/B while
        working (nothing recorded)."""
        self.floor("multi", "uncontended", 64, self.short)
        server = Server(env, 2, self.work / "server-quick.log")
        server.start()
        try:
            for scenario in self.args.quick_scenarios.split(","):
                script, extra = QUICK[scenario]
                wrk(
                    self,
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
                wrk(
                    self,
                    server,
                    scenario,
                    scenario,
                    script,
                    64,
                    self.short,
                    extra,
                    backend="postgres",
                )
                log(f"    worker CPU shares %: {self.scenarios[-1]['cpu']['worker_pcts']}")
        finally:
            server.stop()

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
            for name, script, extra in CPU_REQUESTS:
                wrk(self, server, "warm", "", script, 1, 2, extra, backend="postgres", record=False)
                r = wrk(
                    self,
                    server,
                    "seq",
                    name,
                    script,
                    1,
                    seconds,
                    extra,
                    backend="postgres",
                    record=False,
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
                log(cpu_line(rows[-1]))
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
            http_scenarios(self, server, "sqlite", full=False)
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
            wrk(
                self,
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
            wrk(
                self,
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


# --- measurements beside the load --------------------------------------------------------------


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


# --- the machine -------------------------------------------------------------------------------


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


# --- command line ------------------------------------------------------------------------------


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
        help=f"comma-separated, in order, repeats allowed: {', '.join(QUICK)}",
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
        render(args.render)
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
    report = assemble(bench, started, machine, quiet)
    publish(report, started, write=not (args.no_write or args.smoke))
