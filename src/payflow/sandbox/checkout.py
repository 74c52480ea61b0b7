"""The rules of `POST /v1/checkout/sessions`: which parameters exist and what values they take.

Errors name the offending parameter exactly as Stripe does (`line_items[0][quantity]`), with
Stripe's codes where Stripe has one and `parameter_invalid` where it only sends a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from payflow.sandbox.currencies import MAXIMUM_CHARGE, MINIMUM_CHARGE, format_amount
from payflow.sandbox.errors import (
    StripeApiError,
    parameter_invalid,
    parameter_missing,
    parameter_unknown,
    resource_missing,
)
from payflow.sandbox.objects import LineItem

_SESSION_PARAMS = frozenset(
    {
        "mode",
        "line_items",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "customer_email",
        "metadata",
        "expires_at",
        "payment_intent_data",
        "payment_method_types",
        "expand",
    }
)
_CURRENCY = re.compile(r"^[a-z]{3}$")
_PLAIN_URL = re.compile(r"[!-\[\]-~]+")  # printable ASCII but the backslash, no spaces
MAX_METADATA_KEYS = 50


@dataclass(frozen=True, slots=True)
class NewSession:
    line_items: list[LineItem]
    success_url: str | None
    cancel_url: str | None
    client_reference_id: str | None
    customer_email: str | None
    metadata: dict[str, str]
    payment_intent_metadata: dict[str, str]
    expires_at: int

    @property
    def currency(self) -> str:
        return self.line_items[0].currency


def parse_new_session(
    params: Mapping[str, Any], *, now: int, min_expires_in: int, max_expires_in: int
) -> NewSession:
    check_known(params, _SESSION_PARAMS)
    mode = params.get("mode")
    if mode is None:
        raise parameter_missing("mode")
    if mode in {"setup", "subscription"}:
        raise parameter_invalid(
            "mode", f"The payments sandbox supports mode=payment only, not {mode}."
        )
    if mode != "payment":
        raise parameter_invalid(
            "mode", "Invalid mode: must be one of payment, setup, or subscription"
        )
    for name in params.get("payment_method_types") or []:
        if name != "card":
            raise parameter_invalid(
                "payment_method_types", f"The payments sandbox supports card only, not {name}."
            )
    items = _line_items(params.get("line_items"))
    intent_data = params.get("payment_intent_data") or {}
    if not isinstance(intent_data, dict):
        raise parameter_invalid("payment_intent_data", "Invalid object")
    check_known(intent_data, {"metadata"}, prefix="payment_intent_data")
    return NewSession(
        line_items=items,
        success_url=_optional_url(params, "success_url"),
        cancel_url=_optional_url(params, "cancel_url"),
        client_reference_id=optional_string(params, "client_reference_id", max_length=200),
        customer_email=optional_string(params, "customer_email", max_length=512),
        metadata=metadata(params.get("metadata"), "metadata"),
        payment_intent_metadata=metadata(
            intent_data.get("metadata"), "payment_intent_data[metadata]"
        ),
        expires_at=_expires_at(params.get("expires_at"), now, min_expires_in, max_expires_in),
    )


def check_redirects(new: NewSession, redirect_base: str) -> None:
    """The sandbox sends browsers only under `redirect_base` (payflow's PUBLIC_URL): any other
    success_url or cancel_url would make its hosted page an open redirect on that origin."""
    for name, url in (("success_url", new.success_url), ("cancel_url", new.cancel_url)):
        if url is not None and not is_under(url, redirect_base):
            raise parameter_invalid(
                name,
                f"The payments sandbox redirects only to URLs under {redirect_base}; "
                f"{name} is not one.",
                "url_invalid",
            )


def is_under(url: str, base: str) -> bool:
    """Same scheme, host and port as `base`, and a path at or below its path. Anything a
    browser might read differently from urlsplit (spaces, control or non-ASCII characters,
    backslashes) is refused rather than interpreted."""
    if not _PLAIN_URL.fullmatch(url):
        return False
    target, root = urlsplit(url), urlsplit(base)
    if (target.scheme, target.netloc.lower()) != (root.scheme, root.netloc.lower()):
        return False
    prefix = root.path.rstrip("/")
    path = target.path or "/"
    return path == prefix or path.startswith(prefix + "/")


def check_known(
    params: Mapping[str, Any], known: frozenset[str] | set[str], prefix: str = ""
) -> None:
    for name in params:
        if name not in known:
            raise parameter_unknown(f"{prefix}[{name}]" if prefix else name)


def integer(value: object, param: str, *, minimum: int = 0) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,18}", value.strip()):
        raise parameter_invalid(param, f"Invalid integer: {value}", "parameter_invalid_integer")
    number = int(value)
    if number < minimum:
        raise parameter_invalid(
            param,
            f"This value must be greater than or equal to {minimum}.",
            "parameter_invalid_integer",
        )
    return number


def optional_string(
    params: Mapping[str, Any], name: str, *, max_length: int, prefix: str = ""
) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    param = f"{prefix}[{name}]" if prefix else name
    if not isinstance(value, str):
        raise parameter_invalid(param, f"Invalid string: {param} must be a string")
    if value == "":
        raise parameter_invalid(
            param,
            f"You passed an empty string for '{param}'. We assume empty values are an attempt "
            f"to unset a parameter; however '{param}' cannot be unset.",
            "parameter_invalid_empty",
        )
    if len(value) > max_length:
        raise parameter_invalid(param, f"Invalid string: must be at most {max_length} characters")
    return value


def metadata(value: object, param: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise parameter_invalid(param, "Invalid object")
    if len(value) > MAX_METADATA_KEYS:
        raise parameter_invalid(param, f"Metadata can have at most {MAX_METADATA_KEYS} keys.")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise parameter_invalid(f"{param}[{key}]", "Metadata values must be strings.")
        if len(key) > 40:
            raise parameter_invalid(
                f"{param}[{key}]", "Metadata keys can be at most 40 characters."
            )
        if len(item) > 500:
            raise parameter_invalid(
                f"{param}[{key}]", "Metadata values can be at most 500 characters."
            )
        if item != "":  # an empty value unsets the key
            result[key] = item
    return result


def _optional_url(params: Mapping[str, Any], name: str) -> str | None:
    value = optional_string(params, name, max_length=5000)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise parameter_invalid(name, "Not a valid URL", "url_invalid")
    return value


def _line_items(value: object) -> list[LineItem]:
    if value is None or value == "" or value == {}:
        raise parameter_missing("line_items", "line_items is required in payment mode.")
    if not isinstance(value, list):
        raise parameter_invalid("line_items", "Invalid array")
    items = [_line_item(raw, f"line_items[{index}]") for index, raw in enumerate(value)]
    currency = items[0].currency
    if any(item.currency != currency for item in items):
        raise parameter_invalid("line_items", "All line items must use the same currency.")
    total = sum(item.amount for item in items)
    minimum = MINIMUM_CHARGE.get(currency, 1)
    if total < minimum:
        raise StripeApiError(
            400,
            "The Checkout Session's total amount due must add up to at least "
            f"{format_amount(minimum, currency)}.",
            code="amount_too_small",
            param="line_items",
        )
    if total > MAXIMUM_CHARGE:
        raise StripeApiError(
            400,
            "The Checkout Session's total amount due must be no more than "
            f"{format_amount(MAXIMUM_CHARGE, currency)}.",
            code="amount_too_large",
            param="line_items",
        )
    return items


def _line_item(raw: object, param: str) -> LineItem:
    if not isinstance(raw, dict):
        raise parameter_invalid(param, "Invalid object")
    check_known(raw, {"price", "price_data", "quantity"}, prefix=param)
    if "price" in raw:
        raise resource_missing("price", str(raw["price"]), f"{param}[price]")
    data = raw.get("price_data")
    if not isinstance(data, dict):
        raise parameter_missing(
            f"{param}[price_data]", f"You must specify either `price` or `price_data` in {param}."
        )
    where = f"{param}[price_data]"
    check_known(data, {"currency", "unit_amount", "product_data", "product"}, prefix=where)
    currency = data.get("currency")
    if currency is None:
        raise parameter_missing(f"{where}[currency]")
    currency = str(currency).lower()
    if not _CURRENCY.match(currency):
        raise parameter_invalid(f"{where}[currency]", f"Invalid currency: {currency}.")
    if "product" in data:
        raise resource_missing("product", str(data["product"]), f"{where}[product]")
    product = data.get("product_data")
    if not isinstance(product, dict):
        raise parameter_missing(
            f"{where}[product_data]",
            f"You must specify either `product` or `product_data` in {where}.",
        )
    check_known(product, {"name", "description", "metadata"}, prefix=f"{where}[product_data]")
    name = optional_string(product, "name", max_length=250, prefix=f"{where}[product_data]")
    if name is None:
        raise parameter_missing(f"{where}[product_data][name]")
    if "unit_amount" not in data:
        raise parameter_missing(f"{where}[unit_amount]")
    unit_amount = integer(data["unit_amount"], f"{where}[unit_amount]")
    if "quantity" not in raw:
        raise parameter_missing(f"{param}[quantity]")
    quantity = integer(raw["quantity"], f"{param}[quantity]", minimum=1)
    return LineItem(name=name, currency=currency, unit_amount=unit_amount, quantity=quantity)


def _expires_at(value: object, now: int, min_expires_in: int, max_expires_in: int) -> int:
    if value is None:
        return now + max_expires_in
    expires_at = integer(value, "expires_at")
    # A client that asks for exactly the minimum loses up to a second to whole-second timestamps
    # and more to the request's travel time; a little slack keeps that boundary from flaking.
    slack = min(5, min_expires_in - 1)
    if expires_at < now + min_expires_in - slack:
        raise parameter_invalid(
            "expires_at",
            f"The `expires_at` timestamp must be at least {min_expires_in} seconds from "
            "Checkout Session creation.",
        )
    if expires_at > now + max_expires_in + 5:
        raise parameter_invalid(
            "expires_at",
            f"The `expires_at` timestamp must be at most {max_expires_in} seconds from "
            "Checkout Session creation.",
        )
    return expires_at
