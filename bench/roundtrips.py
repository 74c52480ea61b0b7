"""Round trips per request: what payflow sends to PostgreSQL and Redis for one request of each kind.

A one-worker payflow is started behind two counting TCP proxies (PostgreSQL wire protocol and RESP),
requests are issued one at a time, and for each kind of request this reports, per request:
- PostgreSQL round trips: every Sync (end of an extended-protocol exchange: prepare, or bind +
  execute) and every simple Query (asyncpg sends BEGIN/COMMIT that way) waits for the server once;
- the statements executed (first words of their SQL), with how many times per request;
- Redis commands, by name.
Latency through the proxies is not measured here: only counts, which do not depend on the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import Server, server_env

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.pg_round_trips = 0
            self.pg_statements: Counter[str] = Counter()
            self.pg_prepares = 0
            self.redis: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "pg_round_trips": self.pg_round_trips,
                "pg_prepares": self.pg_prepares,
                "pg_statements": dict(self.pg_statements),
                "redis": dict(self.redis),
            }


def _label(sql: str) -> str:
    """A short name for a statement: its verb and table(s)."""
    text = " ".join(sql.split())
    upper = text.upper()
    if upper.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SELECT 1")):
        return upper.split(";")[0][:40]
    if upper.startswith("WITH"):
        return "WITH … " + _label(text[upper.rfind(") ") + 2 :])
    match = re.match(r"(?i)(INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", text)
    if match:
        return f"{match.group(1).upper()} {match.group(2)}"
    if upper.startswith("SELECT"):
        tables = re.findall(r"(?i)\bFROM\s+(\w+)|\bJOIN\s+(\w+)", text)
        names = sorted({a or b for a, b in tables})
        return "SELECT " + ",".join(names) + (" FOR UPDATE" if "FOR UPDATE" in upper else "")
    return text[:50]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


async def _pg_client_side(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: Counts
) -> None:
    statements: dict[bytes, str] = {}
    bound = b""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:  # start-up packets: length, code, … (SSL/GSS requests come first)
            head = await reader.readexactly(8)
            length, code = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
            rest = await reader.readexactly(length - 8)
            writer.write(head + rest)
            await writer.drain()
            if code not in (SSL_REQUEST, GSSENC_REQUEST):
                break
        while True:
            head = await reader.readexactly(5)
            kind, length = head[:1], int.from_bytes(head[1:], "big")
            body = await reader.readexactly(length - 4)
            with counts.lock:
                if kind == b"P":
                    name, _, rest = body.partition(b"\0")
                    statements[name] = rest.partition(b"\0")[0].decode(errors="replace")
                    counts.pg_prepares += 1
                elif kind == b"B":
                    bound = body.split(b"\0", 2)[1]
                elif kind == b"E":
                    counts.pg_statements[_label(statements.get(bound, "?"))] += 1
                elif kind == b"Q":
                    counts.pg_statements[_label(body.rstrip(b"\0").decode(errors="replace"))] += 1
                    counts.pg_round_trips += 1
                elif kind == b"S":
                    counts.pg_round_trips += 1
            writer.write(head + body)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


async def _redis_client_side(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: Counts
) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
        while True:
            line = await reader.readline()
            if not line:
                break
            chunks = [line]
            name = "?"
            if line.startswith(b"*"):
                for index in range(int(line[1:].strip())):
                    size_line = await reader.readline()
                    data = await reader.readexactly(int(size_line[1:].strip()) + 2)
                    chunks += [size_line, data]
                    if index == 0:
                        name = data[:-2].decode(errors="replace").upper()
            else:
                name = line.split(b" ", 1)[0].decode(errors="replace").upper()
            with counts.lock:
                counts.redis[name] += 1
            writer.write(b"".join(chunks))
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


def _proxy(
    upstream: tuple[str, int],
    counts: Counts,
    client_side: Callable[[asyncio.StreamReader, asyncio.StreamWriter, Counts], Any],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            client_side(reader, up_writer, counts), _pipe(up_reader, writer), return_exceptions=True
        )

    return handle


class Proxies:
    """The two counting proxies, on an event loop of their own in a background thread."""

    def __init__(self, pg: tuple[str, int], redis: tuple[str, int]) -> None:
        self.counts = Counts()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._pg, self._redis = pg, redis
        self.ports: dict[str, int] = {}
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            pg = await asyncio.start_server(
                _proxy(self._pg, self.counts, _pg_client_side), "127.0.0.1", 0
            )
            redis = await asyncio.start_server(
                _proxy(self._redis, self.counts, _redis_client_side), "127.0.0.1", 0
            )
            self.ports = {
                "pg": pg.sockets[0].getsockname()[1],
                "redis": redis.sockets[0].getsockname()[1],
            }
            self._servers = (pg, redis)
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        def shut() -> None:
            for server in self._servers:
                server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(shut)
        self._thread.join(5)


def trace(
    *,
    database: str,
    pg_host: str,
    pg_port: int,
    redis_host: str,
    redis_port: int,
    data_dir: Path,
    work_dir: Path,
    password: str,
    samples: int = 20,
) -> dict[str, Any]:
    proxies = Proxies((pg_host, pg_port), (redis_host, redis_port))
    env = server_env(
        database_url=f"postgresql://postgres@127.0.0.1:{proxies.ports['pg']}/{database}",
        log_dir=work_dir / "logs",
        redis_url=f"redis://127.0.0.1:{proxies.ports['redis']}/0",
        redis_prefix=f"payflow-bench-trace-{uuid.uuid4().hex[:8]}:",
        external_gateway=True,
    )
    env["SWEEPER_INTERVAL_SECONDS"] = "3600"  # no background statements while counting
    server = Server(env, 1, work_dir / "trace-server.log")
    rnd = random.Random(3)
    tokens = (data_dir / "tokens.txt").read_text().split()
    products = (data_dir / "products.txt").read_text().split()
    hot = (data_dir / "hot.txt").read_text().split()[0]
    emails = (data_dir / "logins.txt").read_text().split()
    nonce = uuid.uuid4().hex[:8]
    serial = iter(range(10**9))

    def auth() -> dict[str, str]:
        return {"Authorization": "Bearer " + rnd.choice(tokens)}

    def purchase(client: httpx.Client, product: str | None = None, keyed: bool = False) -> int:
        headers = auth()
        if keyed:
            headers["Idempotency-Key"] = f"trace-{nonce}-{next(serial)}"
        body = {
            "productId": product or rnd.choice(products),
            "paymentMethod": "WALLET",
            "quantity": 1,
        }
        return client.post("/api/v1/orders", json=body, headers=headers).status_code

    def deposit(client: httpx.Client) -> int:
        headers = {**auth(), "Idempotency-Key": f"trace-{nonce}-{next(serial)}"}
        return client.post(
            "/api/v1/wallet/deposit", json={"amount": "1.00"}, headers=headers
        ).status_code

    cached_id = products[0]
    kinds: dict[str, tuple[Callable[[httpx.Client], int], int]] = {
        "POST /orders (wallet)": (lambda c: purchase(c), samples),
        "POST /orders (wallet, Idempotency-Key)": (lambda c: purchase(c, keyed=True), samples),
        "POST /orders (wallet, hot product)": (lambda c: purchase(c, product=hot), samples),
        "POST /wallet/deposit (Idempotency-Key)": (deposit, samples),
        "GET /products/{id} (cached)": (
            lambda c: c.get(f"/api/v1/products/{cached_id}").status_code,
            samples,
        ),
        "GET /products (cached)": (lambda c: c.get("/api/v1/products").status_code, samples),
        "GET /wallet": (lambda c: c.get("/api/v1/wallet", headers=auth()).status_code, samples),
        "POST /auth/login": (
            lambda c: (
                c.post(
                    "/api/v1/auth/login", json={"email": rnd.choice(emails), "password": password}
                ).status_code
            ),
            3,
        ),
    }
    report: dict[str, Any] = {}
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for name, (call, count) in kinds.items():
                for _ in range(3):  # warm: prepared statements, caches
                    call(client)
                proxies.counts.reset()
                statuses = Counter(call(client) for _ in range(count))
                snap = proxies.counts.snapshot()
                report[name] = {
                    "requests": count,
                    "statuses": {str(k): v for k, v in statuses.items()},
                    "pg_round_trips": round(snap["pg_round_trips"] / count, 2),
                    "pg_prepares": round(snap["pg_prepares"] / count, 2),
                    "pg_statements": {
                        k: round(v / count, 2)
                        for k, v in sorted(snap["pg_statements"].items(), key=lambda kv: -kv[1])
                    },
                    "redis_commands": round(sum(snap["redis"].values()) / count, 2),
                    "redis": {k: round(v / count, 2) for k, v in sorted(snap["redis"].items())},
                }
    finally:
        server.stop()
        proxies.close()
    return report


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--password", default="bench-password-1234")
    args = parser.parse_args()
    print(
        json.dumps(
            trace(
                database=args.database,
                pg_host="127.0.0.1",
                pg_port=5432,
                redis_host="127.0.0.1",
                redis_port=6379,
                data_dir=args.data,
                work_dir=args.work,
                password=args.password,
            ),
            indent=2,
        )
    )
