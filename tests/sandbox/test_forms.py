"""Stripe's bracket form encoding, decoded as the sandbox reads the SDK's requests."""

from __future__ import annotations

import pytest

from payflow.sandbox.errors import StripeApiError
from payflow.sandbox.forms import parse_form


def test_nested_lists_and_hashes_are_rebuilt() -> None:
    body = (
        "mode=payment&line_items[0][price_data][currency]=usd"
        "&line_items[0][price_data][product_data][name]=Book+%26+more"
        "&line_items[0][quantity]=2&line_items[1][quantity]=1"
        "&metadata[order_id]=o-1&payment_intent_data[metadata][order_id]=o-1"
    )

    assert parse_form(body) == {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": "usd", "product_data": {"name": "Book & more"}},
                "quantity": "2",
            },
            {"quantity": "1"},
        ],
        "metadata": {"order_id": "o-1"},
        "payment_intent_data": {"metadata": {"order_id": "o-1"}},
    }


def test_list_indices_are_ordered_by_number_not_text() -> None:
    body = "&".join(f"expand[{i}]=f{i}" for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9))

    assert parse_form(body)["expand"] == [f"f{i}" for i in range(11)]


def test_empty_brackets_append() -> None:
    assert parse_form("expand[]=a&expand[]=b") == {"expand": ["a", "b"]}


def test_metadata_keys_that_look_like_indices_stay_keys() -> None:
    assert parse_form("metadata[0]=zero&metadata[1]=one") == {"metadata": {"0": "zero", "1": "one"}}


def test_empty_values_are_kept_because_they_mean_unset() -> None:
    assert parse_form("metadata=&client_reference_id=") == {
        "metadata": "",
        "client_reference_id": "",
    }


@pytest.mark.parametrize(
    "body",
    ["metadata=x&metadata[a]=y", "metadata[a]=y&metadata=x", "line_items[0=1", "[0]=x"],
)
def test_contradictory_or_malformed_names_are_400(body: str) -> None:
    with pytest.raises(StripeApiError) as raised:
        parse_form(body)

    assert raised.value.status == 400
