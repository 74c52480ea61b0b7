"""Seed a payflow database for the benchmark, directly with SQL (much faster than the API).

What it writes keeps every invariant of docs/api.md, so `payflow audit` passes on a seeded database:
- merchants (role MERCHANT) with empty wallets (balance 0, version 0, no ledger row);
- buyers (role USER) whose wallets hold `buyer_balance`, each with the one DEPOSIT ledger row
  (seq 1 = wallet version 1, balance_before 0, balance_after = balance) that explains it;
- products (many per merchant, plus one "hot" product of one merchant) with a CREATED stock
  adjustment of their initial units;
- every user shares one bcrypt hash (cost 12) of PASSWORD, computed once, for the login scenario.

It uses payflow's own table definitions (SQLAlchemy Core), so it follows the schema as it changes and
works on PostgreSQL and SQLite alike. Access tokens are minted with payflow's own TokenService and
the JWT secret the benchmark gives the server, instead of logging in 10,000 users through bcrypt.

The files it writes into the data folder are what the load generators read:
  tokens.txt      one buyer access token per line
  products.txt    one product id per line (the uncontended catalogue)
  hot.txt         the hot product's id
  catalogue.txt   the product ids GET /products/{id} picks from
  logins.txt      e-mail addresses whose password is PASSWORD
  floor.json      ids the asyncpg floor needs: buyers (user id, wallet id), products (with merchant
                  and merchant wallet ids, price), the hot product
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from payflow.config import Settings
from payflow.core.security import TokenService, TokenType
from payflow.products.models import products, stock_adjustments
from payflow.users.models import users
from payflow.wallets.models import wallet_transactions, wallets

PASSWORD = "bench-password-1234"  # noqa: S105 - a throw-away benchmark account
CURRENCY = "USD"
CHUNK = 2000


@dataclass(frozen=True)
class SeedSpec:
    merchants: int = 1000
    products_per_merchant: int = 4
    buyers: int = 10000
    buyer_balance: int = 1_000_000_000  # minor units: 10,000,000.00 USD each
    units: int = 1_000_000  # per product
    hot_units: int = 500_000_000
    logins: int = 256
    catalogue: int = 1000  # products that GET /products/{id} picks from


async def seed(
    database_url: str, data_dir: Path, spec: SeedSpec, settings: Settings, *, seed_value: int = 8
) -> dict[str, Any]:
    """Write the data set and the load generators' files; return a summary."""
    started = time.perf_counter()
    rnd = random.Random(seed_value)
    now = datetime.now(UTC)
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()

    def user(email: str, role: str) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "email": email,
            "password_hash": password_hash,
            "role": role,
            "first_name": None,
            "last_name": None,
            "is_active": True,
            "last_login_at": None,
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
        }

    merchant_rows = [
        user(f"merchant{i}@bench.payflow.test", "MERCHANT") for i in range(spec.merchants)
    ]
    hot_merchant = user("hot-merchant@bench.payflow.test", "MERCHANT")
    merchant_rows.append(hot_merchant)
    buyer_rows = [user(f"buyer{i}@bench.payflow.test", "USER") for i in range(spec.buyers)]

    wallet_rows: list[dict[str, Any]] = []
    ledger_rows: list[dict[str, Any]] = []
    wallet_of: dict[uuid.UUID, uuid.UUID] = {}
    for row in merchant_rows:
        wallet_id = uuid.uuid4()
        wallet_of[row["id"]] = wallet_id
        wallet_rows.append(_wallet(wallet_id, row["id"], 0, 0, now))
    for row in buyer_rows:
        wallet_id = uuid.uuid4()
        wallet_of[row["id"]] = wallet_id
        wallet_rows.append(_wallet(wallet_id, row["id"], spec.buyer_balance, 1, now))
        ledger_rows.append(
            {
                "id": uuid.uuid4(),
                "wallet_id": wallet_id,
                "seq": 1,
                "type": "DEPOSIT",
                "status": "COMPLETED",
                "amount": spec.buyer_balance,
                "balance_before": 0,
                "balance_after": spec.buyer_balance,
                "currency": CURRENCY,
                "description": "benchmark seed",
                "reference_type": None,
                "reference_id": None,
                "metadata": None,
                "created_at": now,
                "updated_at": now,
            }
        )

    product_rows: list[dict[str, Any]] = []
    for merchant in merchant_rows[:-1]:
        for j in range(spec.products_per_merchant):
            product_rows.append(
                _product(merchant["id"], f"Bench item {j}", rnd.randint(100, 999), spec.units, now)
            )
    hot = _product(hot_merchant["id"], "The hot item", 500, spec.hot_units, now)
    product_rows.append(hot)
    adjustment_rows = [
        {
            "id": uuid.uuid4(),
            "product_id": row["id"],
            "delta": row["initial_units"],
            "reason": "CREATED",
            "actor_id": row["merchant_id"],
            "created_at": now,
            "updated_at": now,
        }
        for row in product_rows
    ]

    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for table, rows in (
                (users, merchant_rows + buyer_rows),
                (wallets, wallet_rows),
                (wallet_transactions, ledger_rows),
                (products, product_rows),
                (stock_adjustments, adjustment_rows),
            ):
                for start in range(0, len(rows), CHUNK):
                    await conn.execute(sa.insert(table), rows[start : start + CHUNK])
            if engine.dialect.name == "postgresql":
                for table in ("users", "wallets", "wallet_transactions", "products"):
                    await conn.exec_driver_sql(f"ANALYZE {table}")
    finally:
        await engine.dispose()

    tokens = TokenService(settings)
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any request is served
    (data_dir / "tokens.txt").write_text(
        "".join(tokens.issue(TokenType.ACCESS, row["id"]).token + "\n" for row in buyer_rows)
    )
    regular = [row for row in product_rows if row is not hot]
    (data_dir / "products.txt").write_text("".join(f"{row['id']}\n" for row in regular))
    (data_dir / "hot.txt").write_text(f"{hot['id']}\n")
    (data_dir / "catalogue.txt").write_text(
        "".join(f"{row['id']}\n" for row in rnd.sample(regular, min(spec.catalogue, len(regular))))
    )
    (data_dir / "logins.txt").write_text(
        "".join(f"{row['email']}\n" for row in buyer_rows[: spec.logins])
    )
    floor = {
        "buyers": [[str(row["id"]), str(wallet_of[row["id"]])] for row in buyer_rows],
        "products": [
            [
                str(row["id"]),
                str(row["merchant_id"]),
                str(wallet_of[row["merchant_id"]]),
                row["price"],
            ]
            for row in regular
        ],
        "hot": [
            str(hot["id"]),
            str(hot["merchant_id"]),
            str(wallet_of[hot["merchant_id"]]),
            hot["price"],
        ],
    }
    (data_dir / "floor.json").write_text(json.dumps(floor))
    return {
        **asdict(spec),
        "users": len(merchant_rows) + len(buyer_rows),
        "products": len(product_rows),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _wallet(
    wallet_id: uuid.UUID, user_id: uuid.UUID, balance: int, version: int, now: datetime
) -> dict[str, Any]:
    return {
        "id": wallet_id,
        "user_id": user_id,
        "balance": balance,
        "currency": CURRENCY,
        "is_locked": False,
        "version": version,
        "created_at": now,
        "updated_at": now,
    }


def _product(
    merchant_id: uuid.UUID, name: str, price: int, units: int, now: datetime
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "merchant_id": merchant_id,
        "name": name,
        "description": "Seeded by the payflow benchmark",
        "price": price,
        "currency": CURRENCY,
        "available_units": units,
        "initial_units": units,
        "reserved_units": 0,
        "is_active": True,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }
