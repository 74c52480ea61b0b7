"""Request bodies (core/json_body.py): numbers keep their text, lone surrogates are refused before
any field sees them, and every route with a body reads it this way. HTTP tests run on both
databases."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import given
from hypothesis import strategies as st

from payflow.core.json_body import JsonBodyRoute, JsonNumber, decode_body
from tests.crafted import json_with_surrogates, surrogate_texts
from tests.support import assert_problem, balance, create_product, deposit, register

JSON = {"Content-Type": "application/json"}


def _surrogates_in(value: Any) -> bool:
    """Whether any string (or key) of a decoded value holds a surrogate code point."""
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_surrogates_in(k) or _surrogates_in(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_surrogates_in(item) for item in value)
    return False


def test_numbers_with_a_fraction_or_exponent_keep_their_text() -> None:
    body = decode_body(b"[0.0100000000000000001, 1E+2, 12.50, 7, -0.0, NaN]")
    assert [item.text for item in body[:3]] == ["0.0100000000000000001", "1E+2", "12.50"]
    assert body[:2] == [0.01, 100.0]  # still floats to everything else
    assert type(body[3]) is int
    assert isinstance(body[5], JsonNumber)
    assert body[5].text == "NaN"


@pytest.mark.parametrize(
    "raw",
    [
        rb'"\ud800"',
        rb'"\uDFFF"',
        rb'{"\udc00": 1}',
        rb'"\ud83d x"',  # a high half not followed by its low half
        rb'"\ude00\ud83d"',  # the halves in the wrong order
        rb'["\ud83d", "\ude00"]',  # the halves in different strings
        rb'"\\\ud800"',  # an escaped backslash, then a surrogate
        b'"\xed\xa0\x80"',  # a surrogate encoded as (invalid) UTF-8
        b'"\xff"',  # not UTF-8
        '"x"'.encode("utf-16"),  # UTF-16, with its byte-order mark
        b'\xef\xbb\xbf"x"',  # UTF-8 with a byte-order mark
    ],
)
def test_lone_surrogates_and_non_utf8_are_not_json(raw: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        decode_body(raw)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (rb'"\ud83d\ude00"', "\U0001f600"),  # a pair is one character
        (rb'"\\ud800"', "\\ud800"),  # an escaped backslash and the letters "ud800"
        (rb'"\\\\ud800"', "\\\\ud800"),
        (rb'"\u00fc\n\"\/"', 'ü\n"/'),
    ],
)
def test_text_without_lone_surrogates_is_read_as_is(raw: bytes, text: str) -> None:
    assert decode_body(raw) == text


@given(
    st.recursive(
        st.text() | surrogate_texts() | st.integers(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text() | surrogate_texts(), inner, max_size=3)
        ),
        max_leaves=6,
    )
)
def test_a_body_is_refused_exactly_when_a_string_would_hold_a_surrogate(value: Any) -> None:
    """Against the standard decoder as the oracle: whatever it would hand on with a lone
    surrogate in it is refused; everything else decodes to the same value."""
    raw = json_with_surrogates(value)
    expected = json.loads(raw)
    if _surrogates_in(expected):
        with pytest.raises(json.JSONDecodeError):
            decode_body(raw)
    else:
        assert decode_body(raw) == expected


def test_every_route_with_a_body_reads_it_with_the_decoder(app: FastAPI) -> None:
    """So no router can be added that parses amounts through floats or lets surrogates in."""
    with_body = [
        route.original_route
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute) and route.original_route.body_field
    ]
    assert len(with_body) >= 9
    plain = [route.path for route in with_body if not isinstance(route, JsonBodyRoute)]
    assert plain == []


# ------------------------------------------------------------------------------------ over HTTP

_SURROGATE = '"x\\ud800y"'


async def test_a_lone_surrogate_in_any_text_field_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    merchant, buyer = await register(client, role="MERCHANT"), await register(client)
    await deposit(client, buyer, "10.00")
    product = await create_product(client, merchant, price="1.00", units=5)
    order = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=buyer.headers,
    )
    assert order.status_code == 201, order.text
    requests = [
        ("POST", "/wallet/deposit", buyer, '{"amount": "1.00", "description": %s}'),
        ("POST", "/wallet/withdraw", buyer, '{"amount": "1.00", "description": %s}'),
        ("POST", "/products", merchant, '{"name": %s, "price": "1.00", "availableUnits": 1}'),
        (
            "POST",
            "/products",
            merchant,
            '{"name": "n", "description": %s, "price": "1.00", "availableUnits": 1}',
        ),
        ("PATCH", f"/products/{product['id']}", merchant, '{"name": %s}'),
        ("PATCH", f"/products/{product['id']}", merchant, '{"description": %s}'),
        ("POST", f"/orders/{order.json()['id']}/refund", merchant, '{"reason": %s}'),
        (
            "POST",
            "/orders",
            buyer,
            '{"productId": "'
            + product["id"]
            + '", "paymentMethod": "WALLET", "idempotencyKey": %s}',
        ),
        (
            "POST",
            "/auth/register",
            None,
            '{"email": "a@example.com", "password": "correct-horse", "firstName": %s}',
        ),
        ("POST", "/auth/register", None, '{"email": "a@example.com", "password": %s}'),
        ("POST", "/auth/login", None, '{"email": %s, "password": "correct-horse"}'),
        ("POST", "/auth/refresh", None, '{"refreshToken": %s}'),
        ("POST", "/wallet/deposit", buyer, '{"amount": "1.00", %s: 1}'),  # a key
    ]
    for method, path, account, template in requests:
        headers = {**JSON, **(account.headers if account else {})}
        response = await client.request(
            method, path, content=(template % _SURROGATE).encode(), headers=headers
        )
        body = assert_problem(response, 400, "VALIDATION_ERROR")
        assert body["detail"] == "The request body is not valid JSON", (path, template)
    assert await balance(client, buyer) == "9.00"
    listed = await client.get("/products/merchant/my-products", headers=merchant.headers)
    assert [item["name"] for item in listed.json()["data"]] == [product["name"]]
    assert (await client.get(f"/orders/{order.json()['id']}", headers=buyer.headers)).json()[
        "status"
    ] == "COMPLETED"


@pytest.mark.parametrize("raw", [b"1.5", b"1e309", b"NaN", b"-0.0"])
async def test_a_body_that_is_a_lone_number_is_not_a_request(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    """A refund's fields are all optional; a JsonNumber must not pass for a body by its
    attributes (FastAPI validates bodies with from_attributes=True)."""
    merchant, buyer = await register(client, role="MERCHANT"), await register(client)
    await deposit(client, buyer, "10.00")
    product = await create_product(client, merchant, price="1.00", units=5)
    order = await client.post(
        "/orders",
        json={"productId": product["id"], "paymentMethod": "WALLET"},
        headers=buyer.headers,
    )
    refund = await client.post(
        f"/orders/{order.json()['id']}/refund", content=raw, headers={**merchant.headers, **JSON}
    )
    assert_problem(refund, 400, "VALIDATION_ERROR")
    assert await balance(client, buyer) == "9.00"
