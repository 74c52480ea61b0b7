"""Wallet purchases and refunds under real contention (issue 5's "Done when"; docs/api.md).

Every test runs a real `payflow serve` (one worker; two separate processes in the multi-process
test) on a fresh database of its own — a SQLite file, and a new PostgreSQL database plus Redis when
TEST_DATABASE_URL / TEST_REDIS_URL are set (tests.deployments) — and drives it over TCP with many
parallel connections. Each test checks the money through the API and ends with `payflow audit`
(invariants 1-5) exiting 0 on the same database.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.deployments import Deployment
from tests.live_server import KEEPALIVE_EXPIRY
from tests.support import Account, assert_problem, create_product, register

Json = dict[str, Any]

REQUEST_TIMEOUT = 90.0
MAX_CONNECTIONS = 128
BUYERS = 100
PRICE = Decimal("7.25")
FUNDS = Decimal("100.00")
RACE_STOCK = 10
RACE_ROUNDS = 3
MIXED_SECONDS = 3.0
MIXED_BUYER_CLIENTS = 12
MIXED_REFUND_CLIENTS = 4
MIXED_BUYERS = 6


# --- a real server on the test's own fresh database ------------------------------------------


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{base_url}/api/v1",
        timeout=REQUEST_TIMEOUT,
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        ),
    )


@pytest.fixture
def base_url(deployment: Deployment) -> Iterator[str]:
    with deployment.server() as url:
        yield url


@pytest.fixture
async def api(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(base_url) as client:
        yield client


# --- API helpers -----------------------------------------------------------------------------


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


async def _deposit(api: httpx.AsyncClient, account: Account, amount: Decimal) -> None:
    response = await api.post(
        "/wallet/deposit", json={"amount": _money(amount)}, headers=account.headers
    )
    assert response.status_code == 201, response.text


async def _funded(api: httpx.AsyncClient, amount: Decimal, role: str = "USER") -> Account:
    account = await register(api, role=role)
    if amount:
        await _deposit(api, account, amount)
    return account


async def _funded_buyers(
    clients: Sequence[httpx.AsyncClient], count: int, amount: Decimal
) -> list[Account]:
    """`count` buyers registered and funded at once, spread over `clients`."""
    return list(
        await asyncio.gather(*(_funded(clients[n % len(clients)], amount) for n in range(count)))
    )


async def _balance(api: httpx.AsyncClient, account: Account) -> Decimal:
    response = await api.get("/wallet", headers=account.headers)
    assert response.status_code == 200, response.text
    return Decimal(response.json()["balance"])


async def _balances(api: httpx.AsyncClient, accounts: Sequence[Account]) -> list[Decimal]:
    return list(await asyncio.gather(*(_balance(api, account) for account in accounts)))


async def _stock(api: httpx.AsyncClient, product_id: str) -> int:
    response = await api.get(f"/products/{product_id}")
    assert response.status_code == 200, response.text
    units: int = response.json()["availableUnits"]
    return units


async def _buy(
    api: httpx.AsyncClient, buyer: Account, product_id: str, *, key: str | None = None
) -> httpx.Response:
    headers = {**buyer.headers, **({"Idempotency-Key": key} if key else {})}
    return await api.post(
        "/orders", json={"productId": product_id, "paymentMethod": "WALLET"}, headers=headers
    )


async def _refund(api: httpx.AsyncClient, merchant: Account, order_id: str) -> httpx.Response:
    return await api.post(
        f"/orders/{order_id}/refund", json={"reason": "concurrency test"}, headers=merchant.headers
    )


async def _pages(api: httpx.AsyncClient, path: str, account: Account, **params: str) -> list[Json]:
    """Every item of a keyset-paginated list, newest first."""
    items: list[Json] = []
    cursor: str | None = None
    while True:
        query: dict[str, str | int] = {"limit": 100, **params}
        if cursor is not None:
            query["cursor"] = cursor
        response = await api.get(path, params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["data"])
        cursor = page["meta"]["nextCursor"]
        if cursor is None:
            return items


def _assert_no_server_error(responses: Sequence[httpx.Response]) -> None:
    failures = [(r.status_code, r.text) for r in responses if r.status_code >= 500]
    assert not failures, f"{len(failures)} responses with 5xx, e.g. {failures[:3]}"


def _outcomes(responses: Sequence[httpx.Response]) -> Counter[tuple[int, str]]:
    """(status, problem code or "") of each response, counted."""
    counted: Counter[tuple[int, str]] = Counter()
    for response in responses:
        code = response.json().get("code", "") if response.status_code >= 400 else ""
        counted[(response.status_code, code)] += 1
    return counted


def _assert_completed(response: httpx.Response, buyer: Account, product: Json) -> Json:
    assert response.status_code == 201, response.text
    order: Json = response.json()
    assert order["status"] == "COMPLETED"
    assert order["paymentMethod"] == "WALLET"
    assert order["userId"] == buyer.id
    assert order["productId"] == product["id"]
    assert order["merchantId"] == product["merchantId"]
    assert order["quantity"] == 1
    assert order["amount"] == product["price"]
    return order


async def _assert_audit_passes(deployment: Deployment) -> None:
    """`payflow audit` on the deployment's database exits 0, having checked invariants 1-5."""
    result = await asyncio.to_thread(deployment.audit, "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    report = json.loads(result.stdout)
    assert report["ok"] is True, report
    checked = {check["invariant"] for check in report["checks"]}
    assert {1, 2, 3, 4, 5} <= checked, checked
    assert all(check["ok"] for check in report["checks"]), report


# --- 1 and 5. the race for the last units ----------------------------------------------------


async def _race_round(
    clients: Sequence[httpx.AsyncClient], buyers: Sequence[Account], product: Json, stock: int
) -> set[int]:
    """Every buyer buys one unit at once (buyer n through clients[n % len]); exactly `stock` of
    them win. Returns the winners' indexes."""
    responses = await asyncio.gather(
        *(_buy(clients[n % len(clients)], buyer, product["id"]) for n, buyer in enumerate(buyers))
    )
    _assert_no_server_error(responses)
    outcomes = _outcomes(responses)
    assert outcomes == {(201, ""): stock, (409, "OUT_OF_STOCK"): len(buyers) - stock}, outcomes
    winners: set[int] = set()
    for n, response in enumerate(responses):
        if response.status_code == 201:
            _assert_completed(response, buyers[n], product)
            winners.add(n)
        else:
            assert_problem(response, 409, "OUT_OF_STOCK")
    return winners


async def _restock(api: httpx.AsyncClient, merchant: Account, product_id: str, units: int) -> None:
    response = await api.patch(
        f"/products/{product_id}", json={"availableUnits": units}, headers=merchant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["availableUnits"] == units


async def _assert_orders_recorded(
    api: httpx.AsyncClient,
    buyers: Sequence[Account],
    wins: Counter[int],
    losses: Counter[int],
    reason: str,
) -> None:
    """Each buyer's own list shows one COMPLETED order per win and one FAILED (with `reason`) per
    loss, and nothing else."""
    listed = await asyncio.gather(*(_pages(api, "/orders", buyer) for buyer in buyers))
    for n, orders in enumerate(listed):
        statuses = Counter(order["status"] for order in orders)
        expected = +Counter({"COMPLETED": wins[n], "FAILED": losses[n]})  # + drops zeros
        assert statuses == expected, (n, statuses, expected)
        for order in orders:
            assert order["userId"] == buyers[n].id
            if order["status"] == "FAILED":
                assert order["failureReason"].startswith(reason), order
                assert order["completedAt"] is None


async def test_a_hundred_buyers_race_for_ten_units_three_rounds(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    merchant = await _funded(api, Decimal(0), role="MERCHANT")
    product = await create_product(api, merchant, price=_money(PRICE), units=RACE_STOCK)
    buyers = await _funded_buyers([api], BUYERS, FUNDS)
    deposited = FUNDS * BUYERS
    wins: Counter[int] = Counter()
    losses: Counter[int] = Counter()

    for round_number in range(1, RACE_ROUNDS + 1):
        if round_number > 1:
            await _restock(api, merchant, product["id"], RACE_STOCK)
        winners = await _race_round([api], buyers, product, RACE_STOCK)
        wins.update(winners)
        losses.update(set(range(BUYERS)) - winners)

        assert await _stock(api, product["id"]) == 0
        assert await _balance(api, merchant) == PRICE * RACE_STOCK * round_number
        if round_number == 1:
            # A loser's refusal is on record: one FAILED order, out of stock.
            loser = buyers[min(set(range(BUYERS)) - winners)]
            failed = await _pages(api, "/orders", loser, status="FAILED")
            assert len(failed) == 1, failed
            assert failed[0]["failureReason"].startswith("OUT_OF_STOCK"), failed

    balances = await _balances(api, buyers)
    for n, balance in enumerate(balances):
        assert balance == FUNDS - PRICE * wins[n], (n, balance, wins[n])
    merchant_balance = await _balance(api, merchant)
    assert merchant_balance == PRICE * RACE_STOCK * RACE_ROUNDS
    assert sum(balances) + merchant_balance == deposited
    await _assert_orders_recorded(api, buyers, wins, losses, "OUT_OF_STOCK")
    sales = await _pages(api, "/orders/merchant/sales", merchant, status="COMPLETED")
    assert len(sales) == RACE_STOCK * RACE_ROUNDS
    await _assert_audit_passes(deployment)


async def test_the_race_through_two_server_processes_sharing_one_database(
    deployment: Deployment,
) -> None:
    """Two separate `payflow serve` processes on one database (and one Redis on PostgreSQL), the
    buyers split between them. Without Redis the processes share no cache, so it is turned off."""
    shared = deployment if deployment.redis_url else deployment.with_env(IN_PROCESS_CACHE="false")
    # One after the other: the first applies the migrations, the second finds nothing to do.
    with shared.server() as first_url, shared.server() as second_url:
        async with _client(first_url) as first, _client(second_url) as second:
            clients = [first, second]
            merchant = await _funded(first, Decimal(0), role="MERCHANT")
            product = await create_product(first, merchant, price=_money(PRICE), units=RACE_STOCK)
            buyers = await _funded_buyers(clients, BUYERS, FUNDS)
            # Both processes have read (and may cache) the stock and the merchant's balance.
            for client in clients:
                assert await _stock(client, product["id"]) == RACE_STOCK
                assert await _balance(client, merchant) == 0

            winners = await _race_round(clients, buyers, product, RACE_STOCK)

            for client in clients:  # neither process serves a stale stock or balance
                assert await _stock(client, product["id"]) == 0
                assert await _balance(client, merchant) == PRICE * RACE_STOCK
            balances = await _balances(second, buyers)
            for n, balance in enumerate(balances):
                assert balance == FUNDS - (PRICE if n in winners else 0), (n, balance)
            assert sum(balances) + PRICE * RACE_STOCK == FUNDS * BUYERS
            wins = Counter(winners)
            losses = Counter(set(range(BUYERS)) - winners)
            await _assert_orders_recorded(first, buyers, wins, losses, "OUT_OF_STOCK")
    await _assert_audit_passes(deployment)


# --- 2. contention alone never refuses a buyer -----------------------------------------------


async def test_a_hundred_buyers_of_plentiful_stock_all_succeed(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    merchant = await _funded(api, Decimal(0), role="MERCHANT")
    product = await create_product(api, merchant, price=_money(PRICE), units=1000)
    buyers = await _funded_buyers([api], BUYERS, FUNDS)

    responses = await asyncio.gather(*(_buy(api, buyer, product["id"]) for buyer in buyers))

    _assert_no_server_error(responses)
    assert _outcomes(responses) == {(201, ""): BUYERS}, _outcomes(responses)
    orders = [
        _assert_completed(r, buyer, product) for r, buyer in zip(responses, buyers, strict=True)
    ]
    assert len({order["id"] for order in orders}) == BUYERS
    assert await _stock(api, product["id"]) == 1000 - BUYERS
    assert await _balances(api, buyers) == [FUNDS - PRICE] * BUYERS
    assert await _balance(api, merchant) == PRICE * BUYERS
    await _assert_audit_passes(deployment)


# --- 3. no double spend -----------------------------------------------------------------------


async def test_fifty_parallel_purchases_with_money_for_one_buy_one(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    attempts = 50
    merchant = await _funded(api, Decimal(0), role="MERCHANT")
    product = await create_product(api, merchant, price="100.00", units=100)
    buyer = await _funded(api, Decimal("100.00"))

    responses = await asyncio.gather(*(_buy(api, buyer, product["id"]) for _ in range(attempts)))

    _assert_no_server_error(responses)
    outcomes = _outcomes(responses)
    assert outcomes == {(201, ""): 1, (400, "INSUFFICIENT_FUNDS"): attempts - 1}, outcomes
    [won] = [r for r in responses if r.status_code == 201]
    order = _assert_completed(won, buyer, product)
    for response in responses:
        if response is not won:
            assert_problem(response, 400, "INSUFFICIENT_FUNDS")
    assert await _balance(api, buyer) == 0
    assert await _balance(api, merchant) == Decimal("100.00")
    assert await _stock(api, product["id"]) == 99
    ledger = await _pages(api, "/wallet/transactions", buyer)
    assert [(row["type"], row["referenceId"]) for row in ledger] == [
        ("PAYMENT", order["id"]),
        ("DEPOSIT", None),
    ]
    await _assert_orders_recorded(
        api, [buyer], Counter({0: 1}), Counter({0: attempts - 1}), "INSUFFICIENT_FUNDS"
    )
    await _assert_audit_passes(deployment)


# --- 4. purchases and refunds between the same wallets, interleaved -----------------------------


@dataclass
class Traffic:
    """What the clients of the mixed test did and were told."""

    deposited: Counter[int] = field(default_factory=Counter)  # buyer index → cents deposited
    # order id → (buyer index, product index), for every purchase answered 201
    bought: dict[str, tuple[int, int]] = field(default_factory=dict)
    refunded: list[str] = field(default_factory=list)  # order ids answered 200, in order
    refused_refunds: list[str] = field(default_factory=list)  # answered ORDER_STATE_CONFLICT
    responses: list[httpx.Response] = field(default_factory=list)
    unexpected: list[tuple[str, int, str]] = field(default_factory=list)


PURCHASE_OUTCOMES = {(201, ""), (409, "OUT_OF_STOCK"), (400, "INSUFFICIENT_FUNDS")}
REFUND_OUTCOMES = {(200, ""), (409, "ORDER_STATE_CONFLICT"), (400, "INSUFFICIENT_FUNDS")}


def _outcome(response: httpx.Response) -> tuple[int, str]:
    if response.status_code < 400:
        return response.status_code, ""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return response.status_code, "(not a problem)"
    return response.status_code, str(response.json().get("code"))


async def _buying_client(
    base_url: str,
    buyers: Sequence[Account],
    buyer_index: int,
    products: Sequence[Json],
    traffic: Traffic,
    rng: random.Random,
    deadline: float,
) -> None:
    buyer = buyers[buyer_index]
    async with _client(base_url) as api:
        while time.monotonic() < deadline:
            product_index = 0 if rng.random() < 0.7 else 1
            response = await _buy(api, buyer, products[product_index]["id"])
            traffic.responses.append(response)
            outcome = _outcome(response)
            if outcome not in PURCHASE_OUTCOMES:
                traffic.unexpected.append(("purchase", *outcome))
            elif response.status_code == 201:
                traffic.bought[response.json()["id"]] = (buyer_index, product_index)
            elif outcome == (400, "INSUFFICIENT_FUNDS"):
                amount = Decimal(rng.randint(20, 60))
                topped = await api.post(
                    "/wallet/deposit", json={"amount": _money(amount)}, headers=buyer.headers
                )
                traffic.responses.append(topped)
                if topped.status_code == 201:
                    traffic.deposited[buyer_index] += int(amount * 100)
                else:
                    traffic.unexpected.append(("deposit", topped.status_code, topped.text))


async def _refunding_client(
    base_url: str,
    merchant: Account,
    traffic: Traffic,
    rng: random.Random,
    deadline: float,
) -> None:
    async with _client(base_url) as api:
        while time.monotonic() < deadline:
            if not traffic.bought:
                await asyncio.sleep(0.01)
                continue
            # Mostly the newest purchases (racing the buyers' next ones), sometimes any order,
            # refunded or not: two clients may pick the same order at once.
            ids = list(traffic.bought)
            order_id = (
                ids[-rng.randint(1, min(5, len(ids)))] if rng.random() < 0.7 else rng.choice(ids)
            )
            response = await _refund(api, merchant, order_id)
            traffic.responses.append(response)
            outcome = _outcome(response)
            if outcome not in REFUND_OUTCOMES:
                traffic.unexpected.append(("refund", *outcome))
            elif response.status_code == 200:
                assert response.json()["status"] == "REFUNDED"
                traffic.refunded.append(order_id)
            elif outcome == (409, "ORDER_STATE_CONFLICT"):
                traffic.refused_refunds.append(order_id)


async def test_purchases_and_refunds_interleaved_never_deadlock(
    deployment: Deployment, base_url: str, api: httpx.AsyncClient
) -> None:
    merchant_funds = Decimal("2000.00")
    merchant = await _funded(api, merchant_funds, role="MERCHANT")
    hot = await create_product(api, merchant, price="10.00", units=15)
    plentiful = await create_product(api, merchant, price="4.50", units=1000)
    products = [hot, plentiful]
    initial_units = [15, 1000]
    buyers = await _funded_buyers([api], MIXED_BUYERS, Decimal("40.00"))
    traffic = Traffic()
    for n in range(MIXED_BUYERS):
        traffic.deposited[n] += 4000
    seeds = random.Random()
    deadline = time.monotonic() + MIXED_SECONDS

    async with asyncio.TaskGroup() as clients:
        for n in range(MIXED_BUYER_CLIENTS):  # two clients per buyer
            clients.create_task(
                _buying_client(
                    base_url,
                    buyers,
                    n % MIXED_BUYERS,
                    products,
                    traffic,
                    random.Random(seeds.random()),
                    deadline,
                )
            )
        for _ in range(MIXED_REFUND_CLIENTS):
            clients.create_task(
                _refunding_client(
                    base_url, merchant, traffic, random.Random(seeds.random()), deadline
                )
            )

    _assert_no_server_error(traffic.responses)
    assert not traffic.unexpected, traffic.unexpected[:5]
    assert len(traffic.refunded) == len(set(traffic.refunded)), "an order was refunded twice"
    refunded = set(traffic.refunded)
    # A refund is refused as a state conflict only for an order someone else refunded.
    assert set(traffic.refused_refunds) <= refunded
    assert len(traffic.bought) >= 10, len(traffic.bought)
    assert refunded, "no refund went through"

    prices = [Decimal(product["price"]) for product in products]
    # Stock: every unit bought and not refunded is gone, every refunded unit is back.
    for index, product in enumerate(products):
        kept = sum(
            1
            for order_id, (_, bought) in traffic.bought.items()
            if bought == index and order_id not in refunded
        )
        assert await _stock(api, product["id"]) == initial_units[index] - kept
    # Money: each buyer has its deposits minus what it kept; the merchant what it kept.
    spent: Counter[int] = Counter()
    for order_id, (buyer_index, product_index) in traffic.bought.items():
        if order_id not in refunded:
            spent[buyer_index] += int(prices[product_index] * 100)
    balances = await _balances(api, buyers)
    for n, balance in enumerate(balances):
        assert balance * 100 == traffic.deposited[n] - spent[n], (n, balance)
    merchant_balance = await _balance(api, merchant)
    assert merchant_balance * 100 == merchant_funds * 100 + sum(spent.values())
    # The orders say the same: each sale COMPLETED, or REFUNDED exactly when refunded.
    sales = {
        order["id"]: order["status"]
        for order in await _pages(api, "/orders/merchant/sales", merchant)
        if order["status"] != "FAILED"
    }
    assert sales == {
        order_id: "REFUNDED" if order_id in refunded else "COMPLETED" for order_id in traffic.bought
    }
    await _assert_audit_passes(deployment)


# --- 6. one idempotency key sent twenty times at once ------------------------------------------


async def test_one_idempotency_key_in_parallel_buys_once(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    parallel = 20
    merchant = await _funded(api, Decimal(0), role="MERCHANT")
    product = await create_product(api, merchant, price=_money(PRICE), units=10)
    buyer = await _funded(api, FUNDS)
    key = f"order-{uuid.uuid4()}"

    responses = await asyncio.gather(
        *(_buy(api, buyer, product["id"], key=key) for _ in range(parallel))
    )

    _assert_no_server_error(responses)
    assert [r.status_code for r in responses] == [201] * parallel, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # byte-identical bodies
    first = [r for r in responses if r.headers.get("idempotent-replayed") != "true"]
    assert len(first) == 1
    order = _assert_completed(responses[0], buyer, product)

    orders = await _pages(api, "/orders", buyer)
    assert [o["id"] for o in orders] == [order["id"]]
    ledger = await _pages(api, "/wallet/transactions", buyer)
    assert [(row["type"], row["referenceId"]) for row in ledger] == [
        ("PAYMENT", order["id"]),
        ("DEPOSIT", None),
    ]
    earnings = await _pages(api, "/wallet/transactions", merchant)
    assert [(row["type"], row["referenceId"]) for row in earnings] == [("EARNING", order["id"])]
    assert await _balance(api, buyer) == FUNDS - PRICE
    assert await _stock(api, product["id"]) == 9
    # Behind the API too: one order, one PAYMENT in the whole database.
    counts = await asyncio.to_thread(
        deployment.query,
        "SELECT (SELECT count(*) FROM orders),"
        " (SELECT count(*) FROM wallet_transactions WHERE type = 'PAYMENT')",
    )
    assert [tuple(int(v) for v in row) for row in counts] == [(1, 1)]
    await _assert_audit_passes(deployment)


# --- 7. someone else's order is indistinguishable from no order --------------------------------


def _comparable(response: httpx.Response) -> tuple[int, str, Json]:
    body: Json = response.json()
    return (
        response.status_code,
        response.headers["content-type"],
        {k: v for k, v in body.items() if k not in ("requestId", "instance")},
    )


async def test_another_users_order_is_404_like_a_random_id(
    deployment: Deployment, api: httpx.AsyncClient
) -> None:
    merchant = await _funded(api, Decimal(0), role="MERCHANT")
    product = await create_product(api, merchant, price=_money(PRICE), units=10)
    buyer, stranger = await _funded_buyers([api], 2, FUNDS)
    other_merchant = await _funded(api, FUNDS, role="MERCHANT")
    order = _assert_completed(await _buy(api, buyer, product["id"]), buyer, product)
    random_id = str(uuid.uuid4())

    for party in (buyer, merchant):  # the two who may see it
        seen = await api.get(f"/orders/{order['id']}", headers=party.headers)
        assert seen.status_code == 200, seen.text
        assert seen.json() == order
    for outsider in (stranger, other_merchant):
        theirs = await api.get(f"/orders/{order['id']}", headers=outsider.headers)
        nobodys = await api.get(f"/orders/{random_id}", headers=outsider.headers)
        assert_problem(theirs, 404, "NOT_FOUND")
        assert_problem(nobodys, 404, "NOT_FOUND")
        assert _comparable(theirs) == _comparable(nobodys)
        # Acting on it is no different: a refund is refused exactly as for no order at all.
        refund_theirs = await _refund(api, outsider, order["id"])
        refund_nobodys = await _refund(api, outsider, random_id)
        assert_problem(refund_theirs, 404, "NOT_FOUND")
        assert _comparable(refund_theirs) == _comparable(refund_nobodys)

    # Nothing changed for the order's own parties.
    assert (await api.get(f"/orders/{order['id']}", headers=buyer.headers)).json() == order
    assert await _balance(api, buyer) == FUNDS - PRICE
    assert await _balance(api, merchant) == PRICE
    await _assert_audit_passes(deployment)
