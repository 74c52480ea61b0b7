"""Products on the wire. A product carries no personal data of its merchant, only the id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from payflow.core.money import Amount, format_minor
from payflow.core.pagination import Page, PageMeta
from payflow.core.schemas import RequestModel, ResponseModel
from payflow.products.records import Product

MAX_UNITS = 1_000_000


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refused here rather than failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
# A character str.strip() keeps, spelled out: JSON Schema's \s is not Python's whitespace ("\x1e"
# is blank to `_named`, not to \s), and the document must refuse exactly the names `_named` does.
# (Python has no whitespace beyond the BMP.)
_NOT_BLANK = "[^{}]".format(
    "".join(f"\\u{code:04x}" for code in range(0x10000) if chr(code).isspace())
)
ProductName = Annotated[
    StorableText,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": _NOT_BLANK}),
    AfterValidator(_named),
]
Description = Annotated[StorableText, Field(max_length=5000)]
# Strict: "5", 5.0 and true are not unit counts.
Units = Annotated[int, Field(strict=True, ge=0, le=MAX_UNITS)]
Version = Annotated[int, Field(strict=True, ge=1)]


class CreateProductRequest(RequestModel):
    name: ProductName
    description: Description | None = None
    price: Amount
    available_units: Units


def _not_null(schema: dict[str, Any]) -> None:
    """The field's JSON schema without its null branch: it may be left out, not set to null."""
    branches = [branch for branch in schema.pop("anyOf", []) if branch != {"type": "null"}]
    if len(branches) == 1:
        schema.update({**branches[0], **schema})
    elif branches:
        schema["anyOf"] = branches
    if schema.get("default", ...) is None:
        del schema["default"]


class UpdateProductRequest(RequestModel):
    """Only the fields present change; `description: null` clears the description.

    The other fields can be left out but not set to null, so their schema offers no null.
    `version` alone changes nothing: at least one other field must be there."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name]}
                for name in ("name", "description", "price", "availableUnits", "isActive")
            ]
        }
    )

    name: ProductName | None = Field(default=None, json_schema_extra=_not_null)
    description: Description | None = None
    price: Amount | None = Field(default=None, json_schema_extra=_not_null)
    available_units: Units | None = Field(default=None, json_schema_extra=_not_null)
    is_active: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, json_schema_extra=_not_null
    )
    version: Version | None = Field(
        default=None,
        description="The version being edited (or send `If-Match`)",
        json_schema_extra=_not_null,
    )

    @field_validator("name", "price", "available_units", "is_active", "version")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Reached only for an explicit null: these fields can be left out, not cleared.
        if value is None:
            raise ValueError("must not be null")
        return value

    def changed_fields(self) -> set[str]:
        return self.model_fields_set - {"version"}


class ProductOut(ResponseModel):
    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    description: str | None
    price: str = Field(examples=["12.50"])
    currency: str
    available_units: int
    initial_units: int
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls(
            id=product.id,
            merchant_id=product.merchant_id,
            name=product.name,
            description=product.description,
            price=format_minor(product.price, product.currency),
            currency=product.currency,
            available_units=product.available_units,
            initial_units=product.initial_units,
            is_active=product.is_active,
            version=product.version,
            created_at=product.created_at,
            updated_at=product.updated_at,
        )


def product_json(product: Product) -> bytes:
    """The product's JSON body, exactly as the API sends (and the cache keeps) it."""
    return ProductOut.of(product).model_dump_json(by_alias=True).encode()


def page_json(products: list[Product], limit: int, next_cursor: str | None) -> bytes:
    page = Page[ProductOut](
        data=[ProductOut.of(product) for product in products],
        meta=PageMeta(limit=limit, next_cursor=next_cursor),
    )
    return page.model_dump_json(by_alias=True).encode()
