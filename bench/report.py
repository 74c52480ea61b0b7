"""The benchmark's output: the results file pair bench/results/<date>-<commit>.{json,md}, the summary
block in bench/README.md between its markers, and the console lines.

`assemble` gathers a finished run into the results dict (the JSON), `evaluate` adds the ratios to
the floor and the targets of issue 8, `markdown` renders the tables, `publish` prints and writes them
(and the README's summary), `render` re-renders the README's summary from a stored run (`--render`).
No database, no servers: only the results of a run, see orchestrate.py for how they are measured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import BENCH_DIR

if TYPE_CHECKING:
    from orchestrate import Bench

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


# --- console lines -----------------------------------------------------------------------------


def scenario_line(result: dict[str, Any]) -> str:
    """One wrk scenario's figures, as the run prints them."""
    cpu = result["cpu"]
    return (
        f"{result['backend']}/{result['workers']}w {result['id']:<14} c{result['concurrency']:<3} {result['rps']:>8.1f} req/s  "
        f"p50 {result['p50_ms']:>7.1f} ms  p99 {result['p99_ms']:>7.1f} ms  "
        f"errors {result['errors']} {result['error_breakdown'] or ''}  "
        f"(server {cpu['server_pct']}%, pg {cpu['postgres_pct']}%, other {cpu['other_pct']}%)"
    )


def floor_line(result: dict[str, Any]) -> str:
    """One floor run's figures, as the run prints them."""
    cpu = result["cpu"]
    return (
        f"floor {result['variant']:<6} {result['target']:<11} c{result['concurrency']:<3} {result['rps']:>8.1f} tx/s   "
        f"p50 {result['p50_ms']:>7.1f} ms  p99 {result['p99_ms']:>7.1f} ms  errors {result['errors'] or 0}"
        f"  (machine busy {cpu['machine_busy_pct']}%)"
    )


def cpu_line(row: dict[str, Any]) -> str:
    """One row of the one-client CPU table, as the run prints it."""
    return (
        f"one client: {row['request']:<42} server {row['server_cpu_ms']:.2f} ms CPU/req, "
        f"PostgreSQL {row['postgres_cpu_ms']:.2f} ms, p50 {row['p50_ms']} ms"
    )


# --- results: the JSON -------------------------------------------------------------------------


def assemble(
    bench: Bench, started: datetime, machine: dict[str, Any], quiet: dict[str, float]
) -> dict[str, Any]:
    """A finished run as the results dict (written as results/<run>.json)."""
    args = bench.args
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
    return report


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


# --- writing -----------------------------------------------------------------------------------


def publish(report: dict[str, Any], started: datetime, *, write: bool) -> None:
    """Print the run's tables; with `write`, store results/<date>-<commit>.{json,md} and update the
    README's summary."""
    machine = report["machine"]
    evaluate(report)
    text = markdown(report)
    print("\n" + text)
    if not write:
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


def render(path: Path) -> None:
    """`--render`: re-render bench/README.md's summary from a stored results/<run>.json, and print it."""
    report = json.loads(path.read_text())
    update_readme(markdown(report, headline=False), path.stem, "Run shown")
    print(markdown(report))
