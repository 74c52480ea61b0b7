"""`payflow audit`: run every invariant check against a database and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.audit.checks import CHECKS as LEDGER_CHECKS
from payflow.audit.checks import Check, Violation
from payflow.audit.liveness_checks import (
    LIVENESS,
    check_paid_orders_settled,
    check_refunds_not_overdue,
)
from payflow.audit.order_checks import check_gateway_effects, check_order_ledger
from payflow.core.db import Database
from payflow.core.tables import utcnow
from payflow.wallets.models import wallet_transactions, wallets

CHECKS: list[tuple[int, str, Check]] = sorted(
    [
        *LEDGER_CHECKS,
        (4, "every order's money is in the ledger as its status says", check_order_ledger),
        (6, "each session, payment and event has at most one effect", check_gateway_effects),
    ],
    key=lambda check: check[0],
)
# How late a sweeper may be before the liveness checks call something stuck: its interval (the
# default here; `payflow audit` uses the configured one) plus a minute for a round's own work.
SWEEP_SLACK = timedelta(seconds=60)
DEFAULT_SWEEPER_INTERVAL = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class CheckResult:
    invariant: int
    description: str
    violations: list[Violation]


@dataclass(frozen=True, slots=True)
class AuditReport:
    wallets: int
    ledger_rows: int
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(not result.violations for result in self.results)

    @property
    def violations(self) -> list[Violation]:
        return [v for result in self.results for v in result.violations]

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "wallets": self.wallets,
            "ledgerRows": self.ledger_rows,
            "checks": [
                {
                    "invariant": r.invariant,
                    "description": r.description,
                    "ok": not r.violations,
                    "violations": [
                        {"subject": v.subject, "detail": v.detail} for v in r.violations
                    ],
                }
                for r in self.results
            ],
        }

    def as_text(self) -> str:
        lines = [f"payflow audit: {self.wallets} wallets, {self.ledger_rows} ledger rows"]
        for result in self.results:
            mark = "ok  " if not result.violations else "FAIL"
            lines.append(f"  [{mark}] invariant {result.invariant}: {result.description}")
            lines.extend(f"         {v.subject}: {v.detail}" for v in result.violations)
        lines.append("all invariants hold" if self.ok else f"{len(self.violations)} violation(s)")
        return "\n".join(lines)


async def run_audit(
    db: Database, *, sweeper_interval: timedelta = DEFAULT_SWEEPER_INTERVAL
) -> AuditReport:
    """Every check, inside one read transaction (one consistent snapshot on PostgreSQL)."""
    now, grace = utcnow(), sweeper_interval + SWEEP_SLACK
    checks: list[tuple[int, str, Check]] = [
        *CHECKS,
        (
            LIVENESS,
            "a paid checkout does not leave its order PENDING past expiry",
            partial(check_paid_orders_settled, now=now, grace=grace),
        ),
        (
            LIVENESS,
            "no gateway refund is overdue",
            partial(check_refunds_not_overdue, now=now, grace=grace),
        ),
    ]

    async def work(conn: AsyncConnection) -> AuditReport:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = (
            await conn.execute(
                sa.select(
                    sa.select(sa.func.count()).select_from(wallets).scalar_subquery(),
                    sa.select(sa.func.count()).select_from(wallet_transactions).scalar_subquery(),
                )
            )
        ).one()
        results = [
            CheckResult(invariant, description, await check(conn))
            for invariant, description, check in checks
        ]
        return AuditReport(wallets=counts[0], ledger_rows=counts[1], results=results)

    return await db.read(work, snapshot=True)
