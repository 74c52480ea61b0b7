"""Where a purchase's CPU goes, part by part, in one process, one call at a time (analysis aid).

    .venv/bin/python bench/cpu_parts.py            # about 30 s; own throw-away database

Not part of `run.sh`: it calls payflow's internals (`orders.service.buy_with_wallet`,
`users.repository.get_live_by_id`, the table objects) and may need updating when they change.
CPU time (time.process_time) per call is what it reports, so it is stable on a busy machine; logging
is configured as the server configures it (JSON lines to stdout, sent to /dev/null here, and a file).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PAYFLOW, new_id, run_logged, server_env
from floor import purchase_multi, purchase_single
from seed import SeedSpec, seed

ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def measure(name: str, call: Callable[[], Awaitable[Any]], n: int = 300) -> float:
    for _ in range(20):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()
    per = (time.process_time() - cpu) * 1000 / n
    print(
        f"{name:<64} {per:6.2f} ms CPU   {(time.perf_counter() - wall) * 1000 / n:6.2f} ms wall",
        file=sys.stderr,
    )
    return per


async def parts(dsn: str, data: Path) -> None:
    import json

    import sqlalchemy as sa

    from payflow.config import Settings
    from payflow.core.idempotency import IdempotentRequest, json_response
    from payflow.core.logging import configure_logging
    from payflow.core.money import MAX_MINOR_UNITS
    from payflow.orders import effects, service
    from payflow.orders.schemas import OrderOut
    from payflow.products import stock
    from payflow.products.models import products
    from payflow.users import repository as users_repo
    from payflow.wallets.models import ReferenceType, wallet_transactions, wallets
    from payflow.wallets.repository import _WALLET_COLUMNS
    from payflow.wiring import AppContext

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    configure_logging(settings)
    ctx = AppContext.create(settings)
    plain = await asyncpg.connect(dsn)
    floor = json.loads((data / "floor.json").read_text())
    buyers = [(uuid.UUID(b), uuid.UUID(w)) for b, w in floor["buyers"]]
    items = [
        (uuid.UUID(p), uuid.UUID(m), uuid.UUID(w), price) for p, m, w, price in floor["products"]
    ]
    users = [
        await ctx.db.read(lambda c, uid=uid: users_repo.get_live_by_id(c, uid))
        for uid, _ in buyers[:300]
    ]
    by_pk = sa.select(products.c.id).where(products.c.id == sa.bindparam("p"))

    async def pooled_raw() -> None:
        async with ctx.db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.fetchrow(
                "SELECT id FROM products WHERE id = $1", random.choice(items)[0]
            )

    def build() -> None:  # what one purchase builds: stock._move, 2 x change_balance, order
        now, pid = datetime.now(UTC), uuid.uuid4()
        statements = [
            sa.update(products)
            .where(
                products.c.id == pid,
                stock._live,
                products.c.merchant_id != pid,
                products.c.available_units >= 1,
            )
            .values(
                available_units=products.c.available_units - 1,
                reserved_units=products.c.reserved_units + 0,
                version=products.c.version + 1,
                updated_at=now,
            )
            .returning(*stock._RETURNING)
        ]
        for delta in (-5, 5):
            balance = wallets.c.balance + delta
            statements.append(
                sa.update(wallets)
                .where(
                    wallets.c.id == pid,
                    wallets.c.currency == "USD",
                    wallets.c.is_locked.is_(False),
                    balance >= 0,
                    balance <= MAX_MINOR_UNITS,
                )
                .values(balance=balance, version=wallets.c.version + 1, updated_at=now)
                .returning(*_WALLET_COLUMNS)
            )
            statements.append(
                sa.insert(wallet_transactions).values(
                    id=pid,
                    wallet_id=pid,
                    seq=1,
                    type="PAYMENT",
                    status="COMPLETED",
                    amount=5,
                    balance_before=10,
                    balance_after=5,
                    currency="USD",
                    description=None,
                    reference_type=ReferenceType.ORDER,
                    reference_id=pid,
                    metadata=None,
                    created_at=now,
                    updated_at=now,
                )
            )
        for statement in statements:
            statement._generate_cache_key()

    async def build_async() -> None:
        build()

    render = lambda order: json_response(201, OrderOut.of(order, order.user_id))  # noqa: E731

    async def buy() -> None:
        await service.buy_with_wallet(
            ctx,
            random.choice(users),
            random.choice(items)[0],
            1,
            IdempotentRequest(None, render, instance="/api/v1/orders", request_id="cpu-parts"),
        )

    print("part (one call at a time)", file=sys.stderr)
    await measure(
        "asyncpg floor: the multi-statement purchase, client CPU",
        lambda: purchase_multi(plain, random.choice(buyers), random.choice(items)),
    )
    await measure(
        "asyncpg floor: the one-statement purchase, client CPU",
        lambda: purchase_single(plain, random.choice(buyers), random.choice(items)),
    )
    await measure(
        "plain asyncpg: SELECT by primary key",
        lambda: plain.fetchrow("SELECT id FROM products WHERE id = $1", random.choice(items)[0]),
    )
    await measure("the same through SQLAlchemy's pool, raw asyncpg connection", pooled_raw)
    await measure(
        "the same as db.read(prebuilt Core SELECT)",
        lambda: ctx.db.read(lambda c: c.execute(by_pk, {"p": random.choice(items)[0]})),
    )
    await measure(
        "auth: db.read(users_repo.get_live_by_id)",
        lambda: ctx.db.read(lambda c: users_repo.get_live_by_id(c, random.choice(buyers)[0])),
    )
    await measure(
        "building a purchase's 5 write statements + cache keys (no I/O)", build_async, 2000
    )
    await measure("service.buy_with_wallet (transaction + post-commit effects)", buy)
    apply = effects.Effects.apply

    async def skip(self: Any) -> None:
        return None

    effects.Effects.apply = skip  # type: ignore[method-assign]
    try:
        await measure("service.buy_with_wallet without post-commit effects", buy)
    finally:
        effects.Effects.apply = apply  # type: ignore[method-assign]
    await plain.close()
    await ctx.close()


def main() -> None:
    name = f"payflow_bench_parts_{new_id()}"
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    work = Path(tempfile.mkdtemp(prefix="payflow-bench-parts-"))
    env = server_env(
        database_url=dsn,
        log_dir=work / "logs",
        redis_url=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"),
        redis_prefix=f"payflow-bench-{new_id()}:",
        external_gateway=True,
    )

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        run_logged([PAYFLOW, "migrate"], work / "migrate.log", env=env)
        os.environ.clear()
        os.environ.update(env)
        from payflow.config import Settings

        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        asyncio.run(
            seed(
                "postgresql+asyncpg://" + dsn.split("://", 1)[1],
                work / "data",
                SeedSpec(merchants=200, buyers=2000, catalogue=100, logins=8),
                settings,
            )
        )
        sys.stdout = open(os.devnull, "w")
        import uvloop

        uvloop.run(parts(dsn, work / "data"))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)
        client = redis.Redis.from_url(env["REDIS_URL"])
        keys = list(client.scan_iter(match=env["REDIS_KEY_PREFIX"] + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
