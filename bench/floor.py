"""The floor: payflow's wallet purchase transaction issued directly with asyncpg, no HTTP, no ORM.

Two variants:

`multi` (the floor of issue 8) mirrors, statement for statement, what payflow sends for a purchase
(the SQL text below is what SQLAlchemy compiles from src/payflow/products/stock.py,
src/payflow/wallets/repository.py and src/payflow/orders/repository.py):

    BEGIN
    UPDATE products … RETURNING            -- take the stock (conditional: live, not own, enough units)
    UPDATE wallets … RETURNING             -- first wallet by ascending id (the global lock order)
    INSERT INTO wallet_transactions …      --   its ledger row
    UPDATE wallets … RETURNING             -- second wallet (buyer debit is conditional: >= 0)
    INSERT INTO wallet_transactions …      --   its ledger row
    INSERT INTO orders …                   -- the COMPLETED order
    COMMIT

i.e. 8 round trips. It knows the wallet ids up front (payflow reads them with one more SELECT,
`purchase_parties`, which the floor leaves out on purpose: it is not part of the bare transaction).

`single` is the same purchase as ONE statement (data-modifying CTEs, autocommit, all-or-nothing: a
refused purchase raises inside the statement so nothing is written): the reference for the stretch
target "beat the floor by needing fewer round trips". Its lock order is product, buyer wallet,
merchant wallet (not by wallet id), which is deadlock-free here only because merchants never buy:
a reference figure, not a drop-in design.

Usage (normally run by bench/run.py):
    python bench/floor.py --dsn postgresql://… --data DIR --variant multi --target uncontended \
        --concurrency 64 --duration 15 --procs 2 --out result.json
Each process opens concurrency/procs connections; all start together after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

MAX_MINOR_UNITS = 999_999_999_999
RETRYABLE = {"40001", "40P01", "55P03"}
MAX_RETRIES = 12

UPD_PRODUCT = (
    "UPDATE products SET available_units=(products.available_units + $1::INTEGER), "
    "reserved_units=(products.reserved_units + $2::INTEGER), version=(products.version + $3::BIGINT), "
    "updated_at=$4::TIMESTAMP WITH TIME ZONE WHERE products.id = $5::UUID AND products.deleted_at IS NULL "
    "AND products.is_active IS true AND products.merchant_id != $6::UUID AND "
    "products.available_units >= $7::INTEGER RETURNING products.id, products.merchant_id, products.name, "
    "products.price, products.currency, products.version"
)
UPD_WALLET = (
    "UPDATE wallets SET balance=(wallets.balance + $1::BIGINT), version=(wallets.version + $2::BIGINT), "
    "updated_at=$3::TIMESTAMP WITH TIME ZONE WHERE wallets.id = $4::UUID AND wallets.currency = $5::VARCHAR "
    "AND wallets.is_locked IS false AND wallets.balance + $1::BIGINT >= $6::BIGINT AND "
    "wallets.balance + $1::BIGINT <= $7::BIGINT RETURNING wallets.id, wallets.user_id, wallets.balance, "
    "wallets.currency, wallets.is_locked, wallets.version, wallets.updated_at"
)
INS_LEDGER = (
    "INSERT INTO wallet_transactions (id, wallet_id, seq, type, status, amount, balance_before, "
    "balance_after, currency, description, reference_type, reference_id, metadata, created_at, "
    "updated_at) VALUES ($1::UUID, $2::UUID, $3::BIGINT, $4::VARCHAR, $5::VARCHAR, $6::BIGINT, "
    "$7::BIGINT, $8::BIGINT, $9::VARCHAR, $10::VARCHAR, $11::VARCHAR, $12::UUID, $13::JSON, "
    "$14::TIMESTAMP WITH TIME ZONE, $15::TIMESTAMP WITH TIME ZONE)"
)
INS_ORDER = (
    "INSERT INTO orders (id, user_id, product_id, merchant_id, quantity, unit_price, amount, currency, "
    "payment_method, status, stripe_session_id, stripe_payment_intent_id, idempotency_key, "
    "reservation_expires_at, completed_at, failed_at, failure_reason, metadata, created_at, "
    "updated_at) VALUES ($1::UUID, $2::UUID, $3::UUID, $4::UUID, $5::INTEGER, $6::BIGINT, $7::BIGINT, "
    "$8::VARCHAR, $9::VARCHAR, $10::VARCHAR, $11::VARCHAR, $12::VARCHAR, $13::VARCHAR, "
    "$14::TIMESTAMP WITH TIME ZONE, $15::TIMESTAMP WITH TIME ZONE, $16::TIMESTAMP WITH TIME ZONE, "
    "$17::TEXT, $18::JSON, $19::TIMESTAMP WITH TIME ZONE, $20::TIMESTAMP WITH TIME ZONE)"
)

# $1 product, $2 buyer user, $3 quantity, $4 buyer wallet, $5 merchant wallet, $6 now,
# $7 order id, $8 payment row id, $9 earning row id
SINGLE = """
WITH p AS (
  UPDATE products SET available_units = available_units - $3::int, version = version + 1,
         updated_at = $6::timestamptz
  WHERE id = $1::uuid AND deleted_at IS NULL AND is_active IS true AND merchant_id <> $2::uuid
    AND available_units >= $3::int
  RETURNING id, merchant_id, price, currency, price * $3::int AS amount
), b AS (
  UPDATE wallets w SET balance = w.balance - p.amount, version = w.version + 1,
         updated_at = $6::timestamptz
  FROM p WHERE w.id = $4::uuid AND w.currency = p.currency AND w.is_locked IS false
    AND w.balance - p.amount >= 0
  RETURNING w.id, w.balance, w.version, p.amount, p.currency
), m AS (
  UPDATE wallets w SET balance = w.balance + b.amount, version = w.version + 1,
         updated_at = $6::timestamptz
  FROM b WHERE w.id = $5::uuid AND w.currency = b.currency AND w.is_locked IS false
    AND w.balance + b.amount <= 999999999999
  RETURNING w.id, w.balance, w.version, b.amount, b.currency
), o AS (
  INSERT INTO orders (id, user_id, product_id, merchant_id, quantity, unit_price, amount, currency,
                      payment_method, status, completed_at, created_at, updated_at)
  SELECT $7::uuid, $2::uuid, p.id, p.merchant_id, $3::int, p.price, p.amount, p.currency,
         'WALLET', 'COMPLETED', $6::timestamptz, $6::timestamptz, $6::timestamptz
  FROM p, m
  RETURNING id
), l AS (
  INSERT INTO wallet_transactions (id, wallet_id, seq, type, status, amount, balance_before,
                                   balance_after, currency, reference_type, reference_id,
                                   created_at, updated_at)
  SELECT $8::uuid, b.id, b.version, 'PAYMENT', 'COMPLETED', b.amount, b.balance + b.amount,
         b.balance, b.currency, 'ORDER', $7::uuid, $6::timestamptz, $6::timestamptz FROM b, m
  UNION ALL
  SELECT $9::uuid, m.id, m.version, 'EARNING', 'COMPLETED', m.amount, m.balance - m.amount,
         m.balance, m.currency, 'ORDER', $7::uuid, $6::timestamptz, $6::timestamptz FROM m
  RETURNING id
)
SELECT CASE WHEN n.written = 3 THEN n.written
            ELSE ('purchase refused, rows written: ' || n.written)::int END
FROM (SELECT (SELECT count(*) FROM o) + (SELECT count(*) FROM l) AS written) n
"""


class Refused(Exception):
    pass


async def purchase_multi(
    conn: asyncpg.Connection, buyer: tuple[uuid.UUID, uuid.UUID], product: tuple[Any, ...]
) -> None:
    buyer_id, buyer_wallet = buyer
    product_id, _merchant_id, merchant_wallet, _price = product
    order_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with conn.transaction():
        row = await conn.fetchrow(UPD_PRODUCT, -1, 0, 1, now, product_id, buyer_id, 1)
        if row is None:
            raise Refused("stock")
        amount = row["price"]
        legs = sorted([(buyer_wallet, False, "PAYMENT"), (merchant_wallet, True, "EARNING")])
        for wallet_id, credit, kind in legs:
            delta = amount if credit else -amount
            wallet = await conn.fetchrow(
                UPD_WALLET, delta, 1, now, wallet_id, row["currency"], 0, MAX_MINOR_UNITS
            )
            if wallet is None:
                raise Refused("wallet")
            await conn.execute(
                INS_LEDGER,
                uuid.uuid4(),
                wallet_id,
                wallet["version"],
                kind,
                "COMPLETED",
                amount,
                wallet["balance"] - delta,
                wallet["balance"],
                row["currency"],
                None,
                "ORDER",
                order_id,
                None,
                now,
                now,
            )
        await conn.execute(
            INS_ORDER,
            order_id,
            buyer_id,
            product_id,
            row["merchant_id"],
            1,
            amount,
            amount,
            row["currency"],
            "WALLET",
            "COMPLETED",
            None,
            None,
            None,
            None,
            now,
            None,
            None,
            None,
            now,
            now,
        )


async def purchase_single(
    conn: asyncpg.Connection, buyer: tuple[uuid.UUID, uuid.UUID], product: tuple[Any, ...]
) -> None:
    buyer_id, buyer_wallet = buyer
    product_id, _merchant_id, merchant_wallet, _price = product
    await conn.fetchval(
        SINGLE,
        product_id,
        buyer_id,
        1,
        buyer_wallet,
        merchant_wallet,
        datetime.now(UTC),
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
    )


async def _run_process(
    dsn: str,
    data: dict[str, Any],
    variant: str,
    target: str,
    connections: int,
    start_at: float,
    warmup: float,
    duration: float,
    seed: int,
    gate: int,
) -> dict[str, Any]:
    rnd = random.Random(seed)
    # At most `gate` transactions of this process in flight at once; the others wait here, in the
    # client, instead of in PostgreSQL's lock queue on the hot row (0: no gate).
    admission = asyncio.Semaphore(gate) if gate else contextlib.nullcontext()
    buyers = [(uuid.UUID(b), uuid.UUID(w)) for b, w in data["buyers"]]
    if target == "hot":
        products = [_product(data["hot"])]
    else:
        products = [_product(p) for p in data["products"]]
    purchase = purchase_multi if variant == "multi" else purchase_single
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    retries = 0
    measure_from = start_at + warmup
    measure_to = measure_from + duration

    async def worker() -> None:
        nonlocal retries
        conn = conns.pop()
        try:
            while True:
                began = time.time()
                if began >= measure_to:
                    return
                buyer = rnd.choice(buyers)
                product = rnd.choice(products)
                outcome = "ok"
                for attempt in range(MAX_RETRIES + 1):
                    try:
                        async with admission:
                            await purchase(conn, buyer, product)
                        break
                    except asyncpg.PostgresError as exc:
                        state = getattr(exc, "sqlstate", None) or "?"
                        if state in RETRYABLE and attempt < MAX_RETRIES:
                            retries += measure_from <= began < measure_to
                            await asyncio.sleep(rnd.uniform(0, 0.002 * 2 ** min(attempt + 1, 6)))
                            continue
                        outcome = f"sqlstate {state}"
                        break
                    except Refused as exc:
                        outcome = f"refused {exc}"
                        break
                ended = time.time()
                if measure_from <= ended <= measure_to:
                    if outcome == "ok":
                        latencies.append(ended - began)
                    else:
                        errors[outcome] += 1
        finally:
            await conn.close()

    cpu: list[float] = []

    async def clock() -> None:  # this process's CPU time over the measured window
        await asyncio.sleep(max(0.0, measure_from - time.time()))
        cpu.append(time.process_time())
        await asyncio.sleep(max(0.0, measure_to - time.time()))
        cpu.append(time.process_time())

    delay = start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    await asyncio.gather(clock(), *(worker() for _ in range(connections)))
    return {
        "latencies": latencies,
        "errors": dict(errors),
        "retries": retries,
        "cpu_s": cpu[1] - cpu[0] if len(cpu) == 2 else 0.0,
    }


def _product(raw: list[Any]) -> tuple[Any, ...]:
    return (uuid.UUID(raw[0]), uuid.UUID(raw[1]), uuid.UUID(raw[2]), raw[3])


def _process_main(args: tuple[Any, ...]) -> dict[str, Any]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    return asyncio.run(_run_process(*args))


def run(
    dsn: str,
    data_dir: Path,
    *,
    variant: str,
    target: str,
    concurrency: int,
    duration: float,
    warmup: float = 3.0,
    procs: int = 2,
    gate: int = 0,
) -> dict[str, Any]:
    data = json.loads((data_dir / "floor.json").read_text())
    procs = max(1, min(procs, concurrency))
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    start_at = time.time() + 2.0 + concurrency * 0.01
    jobs = [
        (dsn, data, variant, target, share, start_at, warmup, duration, 1000 + i, gate)
        for i, share in enumerate(shares)
    ]
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        parts = pool.map(_process_main, jobs)
    latencies = sorted(x for part in parts for x in part["latencies"])
    errors: Counter[str] = Counter()
    for part in parts:
        errors.update(part["errors"])
    ok = len(latencies)
    return {
        "variant": variant,
        "target": target,
        "concurrency": concurrency,
        "processes": procs,
        "gate_per_process": gate,
        "duration_s": duration,
        "requests": ok + sum(errors.values()),
        "ok": ok,
        "rps": round(ok / duration, 1),
        "p50_ms": round(_pct(latencies, 50) * 1000, 2),
        "p99_ms": round(_pct(latencies, 99) * 1000, 2),
        "errors": dict(errors),
        "retries": sum(part["retries"] for part in parts),
        "client_cpu_ms_per_tx": round(1000 * sum(part["cpu_s"] for part in parts) / max(ok, 1), 3),
    }


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--variant", choices=["multi", "single"], default="multi")
    parser.add_argument("--target", choices=["uncontended", "hot"], default="uncontended")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument(
        "--gate", type=int, default=0, help="max transactions in flight per process"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(
        args.dsn,
        args.data,
        variant=args.variant,
        target=args.target,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        procs=args.procs,
        gate=args.gate,
    )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
