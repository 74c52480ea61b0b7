"""One buyer's gateway orders racing each other never get past the reservation caps.

A real `payflow serve` (with its payments sandbox) on a fresh database of its own — SQLite, and
PostgreSQL + Redis when configured (tests.deployments) — driven over TCP with many parallel
connections: on PostgreSQL the orders' transactions really run side by side, and only the
per-buyer lock taken before counting keeps the count exact. Ends with `payflow audit` exiting 0.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from tests.deployments import Deployment
from tests.live_server import KEEPALIVE_EXPIRY, free_port
from tests.support import Account, create_product, register

PARALLEL = 40
MAX_ORDERS = 10
MAX_UNITS = 100


@pytest.fixture
async def api(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    configured = deployment.with_env(
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        MAX_OPEN_RESERVATIONS_PER_BUYER=str(MAX_ORDERS),
        MAX_RESERVED_UNITS_PER_BUYER=str(MAX_UNITS),
    )
    with configured.server(port=port) as base_url:
        async with httpx.AsyncClient(
            base_url=f"{base_url}/api/v1",
            timeout=90,
            limits=httpx.Limits(
                max_connections=PARALLEL,
                max_keepalive_connections=PARALLEL,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
        ) as client:
            yield client


async def _checkout(
    api: httpx.AsyncClient, buyer: Account, product_id: str, quantity: int
) -> httpx.Response:
    return await api.post(
        "/orders",
        json={"productId": product_id, "paymentMethod": "GATEWAY", "quantity": quantity},
        headers=buyer.headers,
    )


def _outcomes(responses: Sequence[httpx.Response]) -> Counter[tuple[int, str]]:
    counted: Counter[tuple[int, str]] = Counter()
    for response in responses:
        code = response.json().get("code", "") if response.status_code >= 400 else ""
        counted[(response.status_code, code)] += 1
    return counted


async def _available(api: httpx.AsyncClient, product_id: str) -> int:
    response = await api.get(f"/products/{product_id}")
    assert response.status_code == 200, response.text
    units: int = response.json()["availableUnits"]
    return units


async def _assert_audit_passes(deployment: Deployment) -> None:
    result = await asyncio.to_thread(deployment.audit, "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["ok"] is True


async def test_parallel_orders_of_one_buyer_never_exceed_the_caps(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    merchant = await register(api, role="MERCHANT")
    products = [await create_product(api, merchant, units=1000) for _ in range(2)]
    many, large = await register(api), await register(api)

    # The orders cap: forty orders of one unit each, over two products, all at once.
    small = await asyncio.gather(
        *(_checkout(api, many, products[n % 2]["id"], 1) for n in range(PARALLEL))
    )
    # The units cap: forty orders of thirty units, all at once: three fit in a hundred.
    big = await asyncio.gather(
        *(_checkout(api, large, products[n % 2]["id"], 30) for n in range(PARALLEL))
    )

    assert _outcomes(small) == {
        (201, ""): MAX_ORDERS,
        (409, "RESERVATION_LIMIT"): PARALLEL - MAX_ORDERS,
    }
    fits = MAX_UNITS // 30
    assert _outcomes(big) == {(201, ""): fits, (409, "RESERVATION_LIMIT"): PARALLEL - fits}
    available = [await _available(api, product["id"]) for product in products]
    assert sum(available) == 2 * 1000 - (MAX_ORDERS + 30 * fits)
    for buyer, placed in ((many, MAX_ORDERS), (large, fits)):
        listed = await api.get(
            "/orders", params={"status": "PENDING", "limit": 100}, headers=buyer.headers
        )
        assert len(listed.json()["data"]) == placed
    await _assert_audit_passes(deployment)
