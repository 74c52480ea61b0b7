"""Money parsing and formatting (docs/api.md): one exact grammar for strings and JSON numbers, never
rounded. The HTTP tests run on both databases."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from payflow.core.json_body import JsonNumber, decode_body
from payflow.core.money import MAX_MINOR_UNITS, InvalidAmount, Money, format_minor
from tests.crafted import (
    amount_traps,
    amounts,
    exponent_traps,
    float_repr_traps,
    foreign_digit_traps,
    underscore_traps,
)
from tests.support import assert_problem, balance, create_product, deposit, register


def _from_json(text: str) -> object:
    """The value `text` becomes as a JSON number in a request body."""
    body = decode_body(b'{"amount": ' + text.encode() + b"}")
    assert isinstance(body, dict)
    return body["amount"]


@pytest.mark.parametrize(
    ("given", "minor"),
    [
        ("12.50", 1250),
        ("12.5", 1250),
        ("0.01", 1),
        ("7", 700),
        ("0.5", 50),
        (7, 700),
        ("9999999999.99", MAX_MINOR_UNITS),
    ],
)
def test_valid_strings_and_integers_parse_exactly(given: object, minor: int) -> None:
    assert Money.parse(given) == Money(minor, "USD")


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("12.5", 1250),
        ("0.1", 10),
        ("19.99", 1999),
        ("12.50", 1250),
        ("9999999999.99", MAX_MINOR_UNITS),
    ],
)
def test_valid_json_numbers_parse_exactly(text: str, minor: int) -> None:
    number = _from_json(text)
    assert isinstance(number, JsonNumber)
    assert Money.parse(number) == Money(minor, "USD")


@pytest.mark.parametrize(
    "given",
    [
        "0",
        0,
        "0.00",
        "-1",
        -5,
        "-0.01",
        "-0",
        "12.345",
        "0.001",
        "10.000",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "1e400",
        "1e-400",
        "1e2",
        "1E2",
        "10000000000.00",
        "99999999999",
        "9" * 5000,
        "0." + "0" * 5000 + "1",
        10**20,
        "abc",
        "",
        " 3.00 ",
        "+3",
        "03",
        "00.50",
        ".5",
        "5.",
        "1,00",
        "1_000",
        "1_0.00",
        "\u0661",  # ARABIC-INDIC DIGIT ONE
        "\uff11.00",  # FULLWIDTH DIGIT ONE
        "\u0967\u0966",  # DEVANAGARI ONE ZERO
        "$5",
        "0x10",
        True,
        None,
        [],
        {},
        12.5,  # a bare float: its digits are the float's, not the client's
        float("nan"),
        Decimal("12.5"),
    ],
)
def test_invalid_amounts_are_refused(given: object) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(given)


@pytest.mark.parametrize(
    "text",
    [
        "0.0100000000000000001",  # the float of 0.01
        "1.0000000000000001",  # the float of 1.0
        "12.345",
        "1.000",
        "1e2",
        "1E+2",
        "1.25e1",
        "5e-1",
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        "-1",
        "-0.5",
        "0",
        "0.0",
        "10000000000",
    ],
)
def test_json_numbers_that_are_not_amounts_are_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(_from_json(text))


@given(amounts())
def test_every_spelling_the_grammar_allows_is_exact_as_a_string_and_as_a_number(
    amount: tuple[str, int],
) -> None:
    text, minor = amount
    assert Money.parse(text).minor == minor
    assert Money.parse(_from_json(text)).minor == minor
    assert minor == int(Decimal(text) * 100)


@given(st.one_of(float_repr_traps(), exponent_traps()))
def test_json_number_traps_are_refused_as_strings_and_as_numbers(text: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text)
    with pytest.raises(InvalidAmount):
        Money.parse(_from_json(text))


@given(st.one_of(underscore_traps(), foreign_digit_traps()))
def test_what_python_reads_as_digits_is_not_an_amount(text: str) -> None:
    Decimal(text)  # Python's own parsers accept these...
    with pytest.raises(InvalidAmount):  # ...the grammar does not
        Money.parse(text)


@given(amount_traps())
def test_no_trap_is_an_amount(text: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text)


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(InvalidAmount):
        Money.parse("1.00", "XXX")
    with pytest.raises(InvalidAmount):
        Money(100, "XXX")


@pytest.mark.parametrize(
    ("minor", "text"), [(0, "0.00"), (1, "0.01"), (1250, "12.50"), (-5, "-0.05"), (100, "1.00")]
)
def test_formatting_uses_the_currency_digits(minor: int, text: str) -> None:
    assert format_minor(minor, "USD") == text
    assert str(Money(1250, "USD")) == "12.50"


# ------------------------------------------------------------------------------------ over HTTP

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "amount",
    [
        "0.0100000000000000001",
        "1.0000000000000001",
        "1e2",
        "1E-2",
        "1e400",
        "NaN",
        "-Infinity",
        "-1.00",
        "0",
        "10000000000.00",
        '"1_000"',
        '"\\u0661"',  # Arabic-Indic one, escaped
        '"\u0661"',  # Arabic-Indic one, as UTF-8
        '"\\uff11.00"',  # fullwidth one
        '" 3.00"',
        '"12.345"',
        '"1e2"',
    ],
)
async def test_a_deposit_that_is_not_an_amount_is_a_400_naming_the_field(
    client: httpx.AsyncClient, amount: str
) -> None:
    user = await register(client)
    response = await client.post(
        "/wallet/deposit",
        content=('{"amount": ' + amount + "}").encode(),
        headers={**user.headers, **JSON},
    )
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert [error["field"] for error in body["errors"]] == ["amount"]
    assert await balance(client, user) == "0.00"


@pytest.mark.parametrize(
    ("amount", "credited"), [("12.5", "12.50"), ('"12.50"', "12.50"), ("7", "7.00")]
)
async def test_a_deposit_reads_strings_and_numbers_exactly(
    client: httpx.AsyncClient, amount: str, credited: str
) -> None:
    user = await register(client)
    response = await client.post(
        "/wallet/deposit",
        content=('{"amount": ' + amount + "}").encode(),
        headers={**user.headers, **JSON},
    )
    assert response.status_code == 201, response.text
    assert await balance(client, user) == credited


async def test_a_product_price_with_hidden_digits_is_refused(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    response = await client.post(
        "/products",
        content=b'{"name": "n", "price": 1.0000000000000001, "availableUnits": 1}',
        headers={**merchant.headers, **JSON},
    )
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert [error["field"] for error in body["errors"]] == ["price"]
    listed = await client.get("/products/merchant/my-products", headers=merchant.headers)
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    "quantity", ["1.0", "1e0", "true", '"1"', str(2**63), "1e309", "9" * 400, "-1", "101"]
)
async def test_quantity_stays_a_strict_integer(client: httpx.AsyncClient, quantity: str) -> None:
    """The body decoder keeps non-integral numbers' text for amounts; integer fields refuse them
    as before, and an out-of-range integer is a 400, not a 500."""
    merchant, buyer = await register(client, role="MERCHANT"), await register(client)
    await deposit(client, buyer, "50.00")
    product = await create_product(client, merchant, price="1.00", units=5)
    order = '{"productId": "%s", "paymentMethod": "WALLET", "quantity": %s}'
    refused = await client.post(
        "/orders",
        content=(order % (product["id"], quantity)).encode(),
        headers={**buyer.headers, **JSON},
    )
    assert_problem(refused, 400, "VALIDATION_ERROR")
    accepted = await client.post(
        "/orders",
        content=(order % (product["id"], "1")).encode(),
        headers={**buyer.headers, **JSON},
    )
    assert accepted.status_code == 201, accepted.text
    assert await balance(client, buyer) == "49.00"
