"""GET /products (public) and GET /products/merchant/my-products: newest first, keyset pages."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter

import httpx
import pytest

from tests.products.support import catalogue, catalogue_ids, patch
from tests.support import Account, assert_problem, create_product, register


async def _all_pages(
    client: httpx.AsyncClient, *, during: Account | None = None, **params: object
) -> list[str]:
    """Every id the catalogue serves, page by page; with `during`, that merchant lists two new
    products while each page is being read."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        if during is None:
            body = await catalogue(client, **query)
        else:
            body, *_ = await asyncio.gather(
                catalogue(client, **query),
                create_product(client, during, name="late arrival"),
                create_product(client, during, name="late arrival"),
            )
        ids.extend(product["id"] for product in body["data"])
        cursor = body["meta"]["nextCursor"]
        if cursor is None:
            return ids


async def test_the_catalogue_lists_products_on_sale_newest_first(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    first = await create_product(client, merchant)
    second = await create_product(client, merchant)
    body = await catalogue(client)
    assert [p["id"] for p in body["data"]] == [second["id"], first["id"]]
    assert body["data"][0] == second
    assert body["meta"] == {"limit": 20, "nextCursor": None}


async def test_paging_by_ten_serves_35_products_exactly_once(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    created = [(await create_product(client, merchant))["id"] for _ in range(35)]
    pages = await _all_pages(client, limit=10)
    assert pages == list(reversed(created))


async def test_products_created_while_paging_never_repeat_or_hide_others(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    created = [(await create_product(client, merchant))["id"] for _ in range(35)]
    seen = await _all_pages(client, limit=10, during=merchant)
    counts = Counter(seen)
    assert all(counts[product_id] == 1 for product_id in created)
    assert max(counts.values()) == 1
    # The older products are served in order; anything new can only come before them.
    assert [product_id for product_id in seen if product_id in set(created)] == created[::-1]
    total = len(await _all_pages(client, limit=100))
    assert total == 35 + 2 * 4  # four pages read, two products listed during each


async def test_inactive_and_deleted_products_are_not_in_the_catalogue(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    on_sale = await create_product(client, merchant)
    hidden = await create_product(client, merchant)
    deleted = await create_product(client, merchant)
    assert (await patch(client, merchant, hidden["id"], {"isActive": False})).status_code == 200
    response = await client.delete(f"/products/{deleted['id']}", headers=merchant.headers)
    assert response.status_code == 204
    assert await catalogue_ids(client) == [on_sale["id"]]


async def test_the_catalogue_filters_by_merchant(client: httpx.AsyncClient) -> None:
    alice = await register(client, role="MERCHANT")
    bob = await register(client, role="MERCHANT")
    alices = await create_product(client, alice)
    bobs = await create_product(client, bob)
    assert await catalogue_ids(client, merchantId=alice.id) == [alices["id"]]
    assert await catalogue_ids(client, merchantId=bob.id) == [bobs["id"]]
    unknown = "00000000-0000-4000-8000-000000000000"
    assert await catalogue_ids(client, merchantId=unknown) == []
    response = await client.get("/products", params={"merchantId": "not-a-uuid"})
    assert_problem(response, 400, "VALIDATION_ERROR")


async def test_the_catalogue_searches_names_case_insensitively(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    guide = await create_product(client, merchant, name="The Python Guide")
    await create_product(client, merchant, name="Rust in Action")
    assert await catalogue_ids(client, q="python") == [guide["id"]]
    assert await catalogue_ids(client, q="PYTHON gu") == [guide["id"]]
    assert await catalogue_ids(client, q="java") == []


async def test_search_wildcards_are_taken_literally(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    percent = await create_product(client, merchant, name="100% cotton")
    underscore = await create_product(client, merchant, name="snake_case")
    backslash = await create_product(client, merchant, name="C:\\temp")
    await create_product(client, merchant, name="100 percent wool, snakeXcase")
    assert await catalogue_ids(client, q="%") == [percent["id"]]
    assert await catalogue_ids(client, q="0% c") == [percent["id"]]
    assert await catalogue_ids(client, q="_") == [underscore["id"]]
    assert await catalogue_ids(client, q="e_c") == [underscore["id"]]
    assert await catalogue_ids(client, q="\\") == [backslash["id"]]
    assert await catalogue_ids(client, q="\\t") == [backslash["id"]]


async def test_search_and_merchant_filters_combine_and_page(client: httpx.AsyncClient) -> None:
    alice = await register(client, role="MERCHANT")
    bob = await register(client, role="MERCHANT")
    wanted = [(await create_product(client, alice, name=f"Course {i}"))["id"] for i in range(5)]
    await create_product(client, alice, name="Book")
    await create_product(client, bob, name="Course by Bob")
    pages = await _all_pages(client, limit=2, q="course", merchantId=alice.id)
    assert pages == wanted[::-1]


@pytest.mark.parametrize("q", ["", "x" * 101, "nul\x00"])
async def test_search_text_is_checked(client: httpx.AsyncClient, q: str) -> None:
    assert_problem(await client.get("/products", params={"q": q}), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten"])
async def test_limit_is_one_to_a_hundred(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/products", params={"limit": limit})
    assert_problem(response, 400, "VALIDATION_ERROR")


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        _cursor("[1]"),
        _cursor('["2026-01-01T00:00:00+00:00"]'),
        _cursor('["yesterday", "00000000-0000-4000-8000-000000000000"]'),
        _cursor('["2026-01-01T00:00:00", "00000000-0000-4000-8000-000000000000"]'),
        _cursor('["2026-01-01T00:00:00+00:00", "not-a-uuid"]'),
        _cursor('["0001-01-01T00:00:00+01:00", "00000000-0000-4000-8000-000000000000"]'),
    ],
)
async def test_a_cursor_this_api_did_not_make_is_a_400(
    client: httpx.AsyncClient, cursor: str
) -> None:
    for path in ("/products", "/products/merchant/my-products"):
        merchant = await register(client, role="MERCHANT")
        response = await client.get(path, params={"cursor": cursor}, headers=merchant.headers)
        body = assert_problem(response, 400, "VALIDATION_ERROR")
        assert body["errors"][0]["field"] == "cursor"


async def test_my_products_lists_the_merchants_own_inactive_included(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    other = await register(client, role="MERCHANT")
    mine = [(await create_product(client, merchant))["id"] for _ in range(3)]
    await create_product(client, other)
    assert (await patch(client, merchant, mine[1], {"isActive": False})).status_code == 200
    response = await client.get(
        "/products/merchant/my-products", params={"limit": 2}, headers=merchant.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert [p["id"] for p in body["data"]] == [mine[2], mine[1]]
    assert body["data"][1]["isActive"] is False
    assert body["meta"]["limit"] == 2
    rest = await client.get(
        "/products/merchant/my-products",
        params={"limit": 2, "cursor": body["meta"]["nextCursor"]},
        headers=merchant.headers,
    )
    assert [p["id"] for p in rest.json()["data"]] == [mine[0]]
    assert rest.json()["meta"]["nextCursor"] is None


async def test_my_products_leaves_out_deleted_products(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    kept = await create_product(client, merchant)
    gone = await create_product(client, merchant)
    await client.delete(f"/products/{gone['id']}", headers=merchant.headers)
    response = await client.get("/products/merchant/my-products", headers=merchant.headers)
    assert [p["id"] for p in response.json()["data"]] == [kept["id"]]


async def test_my_products_is_for_merchants(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await client.get("/products/merchant/my-products", headers=user.headers)
    assert_problem(response, 403, "FORBIDDEN")
    response = await client.get("/products/merchant/my-products")
    assert_problem(response, 401, "UNAUTHORIZED")
