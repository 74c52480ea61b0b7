"""`payflow audit` end to end (docs/api.md, Invariants; issue 3), and the ledger's immutability in the database.

Money is moved through a real `payflow serve`; the audit runs as the installed CLI against the same
database. Then the database is tampered with behind payflow's back, by plain SQL, and the audit must
fail naming the wallet; UPDATE and DELETE of ledger rows must be refused by the database itself.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.deployments import Deployment, pg_execute
from tests.live_server import CLIENT_LIMITS
from tests.support import DEFAULT_PASSWORD, unique_email

Json = dict[str, Any]


# --- a fresh database, money moved through the API ------------------------------------------


@dataclass(frozen=True)
class Funded:
    """Two wallets in the deployment's database, with a few deposits and withdrawals behind them."""

    wallet_ids: tuple[str, str]
    ledger_rows: int


def _move_money(base_url: str) -> tuple[tuple[str, str], int]:
    """Two users, each with deposits and withdrawals (one refused); their wallet ids, row count."""
    wallet_ids: list[str] = []
    rows = 0
    with httpx.Client(base_url=f"{base_url}/api/v1", timeout=30.0, limits=CLIENT_LIMITS) as api:
        for amounts in (
            [("deposit", "100.00"), ("withdraw", "30.25"), ("deposit", "0.50")],
            [("deposit", "10.00"), ("withdraw", "10.00"), ("deposit", "7.77")],
        ):
            registered = api.post(
                "/auth/register",
                json={"email": unique_email("audit"), "password": DEFAULT_PASSWORD},
            )
            assert registered.status_code == 201, registered.text
            headers = {"Authorization": f"Bearer {registered.json()['accessToken']}"}
            for kind, amount in amounts:
                moved = api.post(f"/wallet/{kind}", json={"amount": amount}, headers=headers)
                assert moved.status_code == 201, moved.text
                rows += 1
            refused = api.post("/wallet/withdraw", json={"amount": "1000.00"}, headers=headers)
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "INSUFFICIENT_FUNDS"
            wallet = api.get("/wallet", headers=headers)
            assert wallet.status_code == 200, wallet.text
            wallet_ids.append(wallet.json()["id"])
    return (wallet_ids[0], wallet_ids[1]), rows


@pytest.fixture
def funded(deployment: Deployment) -> Funded:
    with deployment.server() as base_url:
        wallet_ids, rows = _move_money(base_url)
    return Funded(wallet_ids, rows)


def _audit_json(deployment: Deployment) -> tuple[int, Json]:
    result = deployment.audit("--json")
    report: Json = json.loads(result.stdout)
    return result.returncode, report


def _violations_naming(report: Json, wallet_id: str) -> list[tuple[int, str]]:
    return [
        (check["invariant"], violation["detail"])
        for check in report["checks"]
        for violation in check["violations"]
        if wallet_id in violation["subject"]
    ]


def _assert_audit_passes(deployment: Deployment, funded: Funded) -> None:
    text = deployment.audit()
    assert text.returncode == 0, (text.stdout, text.stderr)
    assert "all invariants hold" in text.stdout
    code, report = _audit_json(deployment)
    assert code == 0
    assert report["ok"] is True
    assert report["wallets"] == 2
    assert report["ledgerRows"] == funded.ledger_rows
    assert report["checks"]
    assert all(check["ok"] and not check["violations"] for check in report["checks"])


# --- the audit -------------------------------------------------------------------------------


def test_audit_passes_then_names_a_wallet_changed_behind_payflows_back(
    deployment: Deployment, funded: Funded
) -> None:
    _assert_audit_passes(deployment, funded)
    tampered, untouched = funded.wallet_ids

    changed = deployment.sql(
        "UPDATE wallets SET balance = balance + 1 WHERE id = $1", uuid.UUID(tampered)
    )
    assert changed == 1

    text = deployment.audit()
    assert text.returncode != 0
    assert tampered in text.stdout
    assert untouched not in text.stdout
    assert "all invariants hold" not in text.stdout
    code, report = _audit_json(deployment)
    assert code != 0
    assert report["ok"] is False
    assert any(invariant == 1 for invariant, _ in _violations_naming(report, tampered))
    assert not _violations_naming(report, untouched)


def test_a_forged_ledger_row_that_breaks_the_chain_is_named(
    deployment: Deployment, funded: Funded
) -> None:
    forged, untouched = funded.wallet_ids
    # A DEPOSIT of 5.00 appended after the newest row, but starting 7.00 above where that row
    # ended; the wallet balance is moved to the forged row's balance_after, so the balance agrees
    # with the last ledger row and only the chain (and what it sums to) gives the forgery away.
    inserted = deployment.sql(
        "INSERT INTO wallet_transactions (id, wallet_id, seq, type, status, amount,"
        " balance_before, balance_after, currency, created_at, updated_at)"
        " SELECT $1::uuid, wallet_id, seq + 1, 'DEPOSIT', 'COMPLETED', 500,"
        " balance_after + 700, balance_after + 1200, currency, created_at, updated_at"
        " FROM wallet_transactions WHERE wallet_id = $2 ORDER BY seq DESC LIMIT 1",
        uuid.uuid4(),
        uuid.UUID(forged),
    )
    assert inserted == 1
    updated = deployment.sql(
        "UPDATE wallets SET balance = balance + 1200, version = version + 1 WHERE id = $1",
        uuid.UUID(forged),
    )
    assert updated == 1

    text = deployment.audit()
    assert text.returncode != 0
    assert forged in text.stdout
    assert untouched not in text.stdout
    code, report = _audit_json(deployment)
    assert code != 0
    assert report["ok"] is False
    assert any(invariant == 1 for invariant, _ in _violations_naming(report, forged))
    assert not _violations_naming(report, untouched)


# --- the ledger is immutable in the database itself -----------------------------------------

UPDATE_LEDGER = "UPDATE wallet_transactions SET amount = 1"
DELETE_LEDGER = "DELETE FROM wallet_transactions"


def _refusal_on_postgres(database_url: str, statement: str) -> str:
    """Run `statement` as an operator would (psql when installed); the error it fails with."""
    psql = shutil.which("psql")
    if psql is not None:
        result = subprocess.run(
            [psql, database_url, "-v", "ON_ERROR_STOP=1", "-X", "-c", statement],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode != 0, result.stdout
        return result.stderr
    with pytest.raises(asyncpg.PostgresError) as refused:
        asyncio.run(pg_execute(database_url, statement))
    return str(refused.value)


def _refusal_on_sqlite(path: str, statement: str) -> str:
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError) as refused, conn:
            conn.execute(statement)
    finally:
        conn.close()
    return str(refused.value)


@pytest.mark.parametrize("statement", [UPDATE_LEDGER, DELETE_LEDGER])
def test_ledger_rows_cannot_be_updated_or_deleted(
    deployment: Deployment, funded: Funded, statement: str
) -> None:
    if deployment.backend == "postgres":
        error = _refusal_on_postgres(deployment.database_url, statement)
    else:
        error = _refusal_on_sqlite(deployment.sqlite_path, statement)
    assert "immutable" in error.lower(), error

    # Nothing changed: every row is still there, and every invariant still holds.
    _assert_audit_passes(deployment, funded)
