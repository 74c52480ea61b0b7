"""Money parsing and formatting (SPEC §4): exact, never rounded."""

from __future__ import annotations

import pytest

from payflow.core.money import MAX_MINOR_UNITS, InvalidAmount, Money, format_minor


@pytest.mark.parametrize(
    ("given", "minor"),
    [
        ("12.50", 1250),
        ("12.5", 1250),
        ("0.01", 1),
        ("7", 700),
        (7, 700),
        (12.5, 1250),
        (0.1, 10),
        (19.99, 1999),
        ("9999999999.99", MAX_MINOR_UNITS),
        (9999999999.99, MAX_MINOR_UNITS),
        (" 3.00 ", 300),
        ("1e2", 10000),
    ],
)
def test_valid_amounts_parse_exactly(given: object, minor: int) -> None:
    assert Money.parse(given) == Money(minor, "USD")


@pytest.mark.parametrize(
    "given",
    [
        "0",
        0,
        "0.00",
        "-1",
        -5,
        "-0.01",
        "12.345",
        12.345,
        "0.001",
        "10.000",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        float("nan"),
        float("inf"),
        "1e400",
        "1e-400",
        1e400,
        "10000000000.00",
        "99999999999",
        10**20,
        "abc",
        "",
        "1,00",
        "$5",
        "0x10",
        True,
        None,
        [],
        {},
    ],
)
def test_invalid_amounts_are_refused(given: object) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(given)


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
