"""The import rules of docs/architecture.md, checked over the source (`ast`, nothing imported):

- `payflow.core` is the kernel: it imports no business domain (nor the wiring or the app);
- `payflow.payments` is an adapter: it never imports `payflow.orders`;
- nothing but the composition root (wiring.py, app.py) imports the sandbox's code: the app
  reaches the sandbox only over HTTP, as it would reach Stripe.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import payflow

SOURCE = Path(payflow.__file__).parent
DOMAINS = ("auth", "users", "wallets", "products", "orders", "payments", "audit", "jobs", "health")
KERNEL_MAY_NOT = {f"payflow.{name}" for name in (*DOMAINS, "sandbox", "wiring", "app", "cli")}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from payflow import orders`
                yield node.lineno, f"{node.module}.{alias.name}"


def _violations(package: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((SOURCE / package).rglob("*.py")):
        for line, module in _imports(path):
            if any(module == bad or module.startswith(bad + ".") for bad in forbidden):
                found.append(f"{path.relative_to(SOURCE)}:{line} imports {module}")
    return found


def test_the_kernel_imports_no_domain() -> None:
    assert _violations("core", KERNEL_MAY_NOT) == []


def test_payments_is_an_adapter_that_never_imports_orders() -> None:
    assert _violations("payments", {"payflow.orders"}) == []


@pytest.mark.parametrize("package", [*DOMAINS])
def test_domains_reach_the_sandbox_only_over_http(package: str) -> None:
    assert _violations(package, {"payflow.sandbox"}) == []


def test_the_rule_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself can fail: an import of orders from a payments module is reported."""
    module = tmp_path / "bad.py"
    module.write_text("from payflow.orders import service\nimport payflow.orders.repository\n")
    assert [name for _, name in _imports(module)] == [
        "payflow.orders",
        "payflow.orders.service",
        "payflow.orders.repository",
    ]
