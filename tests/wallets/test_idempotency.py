"""Idempotency-Key on wallet movements (docs/api.md): scoping, validation, what is stored."""

from __future__ import annotations

import httpx
import pytest

from tests.support import Account, assert_problem, register


async def _deposit(
    client: httpx.AsyncClient, account: Account, amount: str, key: str | None
) -> httpx.Response:
    headers = dict(account.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/wallet/deposit", json={"amount": amount}, headers=headers)


async def _ledger_size(client: httpx.AsyncClient, account: Account) -> int:
    response = await client.get("/wallet/transactions", headers=account.headers)
    return len(response.json()["data"])


async def test_a_replay_is_byte_identical_and_marked(client: httpx.AsyncClient) -> None:
    account = await register(client)
    first = await _deposit(client, account, "5.00", "key-1")
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    replay = await _deposit(client, account, "5.00", "key-1")
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    assert await _ledger_size(client, account) == 1


async def test_the_same_amount_written_differently_is_the_same_request(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    first = await _deposit(client, account, "5", "key-1")
    replay = await client.post(
        "/wallet/deposit",
        json={"amount": 5.0},
        headers={**account.headers, "Idempotency-Key": "key-1"},
    )
    assert replay.content == first.content
    assert await _ledger_size(client, account) == 1


async def test_a_different_request_under_the_same_key_is_422(client: httpx.AsyncClient) -> None:
    account = await register(client)
    await _deposit(client, account, "5.00", "key-1")
    assert_problem(
        await _deposit(client, account, "6.00", "key-1"), 422, "IDEMPOTENCY_KEY_MISMATCH"
    )
    assert await _ledger_size(client, account) == 1


async def test_keys_are_scoped_per_user_and_per_endpoint(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    assert (await _deposit(client, alice, "5.00", "shared")).status_code == 201
    bobs = await _deposit(client, bob, "5.00", "shared")
    assert bobs.status_code == 201
    assert "idempotent-replayed" not in bobs.headers
    withdrawal = await client.post(
        "/wallet/withdraw",
        json={"amount": "5.00"},
        headers={**alice.headers, "Idempotency-Key": "shared"},
    )
    assert withdrawal.status_code == 201
    assert "idempotent-replayed" not in withdrawal.headers
    assert (await client.get("/wallet", headers=alice.headers)).json()["balance"] == "0.00"


async def test_validation_failures_are_not_stored(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert_problem(await _deposit(client, account, "0.001", "key-1"), 400, "VALIDATION_ERROR")
    ok = await _deposit(client, account, "1.00", "key-1")
    assert ok.status_code == 201
    assert "idempotent-replayed" not in ok.headers


async def test_business_failures_are_stored_and_replayed(client: httpx.AsyncClient) -> None:
    account = await register(client)
    headers = {**account.headers, "Idempotency-Key": "withdraw-1"}
    first = await client.post("/wallet/withdraw", json={"amount": "10.00"}, headers=headers)
    assert_problem(first, 400, "INSUFFICIENT_FUNDS")
    await _deposit(client, account, "50.00", None)
    replay = await client.post("/wallet/withdraw", json={"amount": "10.00"}, headers=headers)
    assert replay.status_code == 400
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/wallet", headers=account.headers)).json()["balance"] == "50.00"


@pytest.mark.parametrize(
    "key", [b"", b"a" * 256, "caf\u00e9".encode("latin-1"), b"tab\there", b"nul\x7f"]
)
async def test_malformed_keys_are_400(client: httpx.AsyncClient, key: bytes) -> None:
    account = await register(client)
    response = await client.post(
        "/wallet/deposit",
        json={"amount": "1.00"},
        headers=[
            (b"authorization", account.headers["Authorization"].encode()),
            (b"idempotency-key", key),
        ],
    )
    assert_problem(response, 400, "VALIDATION_ERROR")
    assert await _ledger_size(client, account) == 0


async def test_a_255_character_key_is_accepted(client: httpx.AsyncClient) -> None:
    account = await register(client)
    key = "k" * 255
    assert (await _deposit(client, account, "1.00", key)).status_code == 201
    assert (await _deposit(client, account, "1.00", key)).headers["idempotent-replayed"] == "true"
