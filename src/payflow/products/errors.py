"""Product errors."""

from __future__ import annotations

from payflow.core.errors import DomainError


class OutOfStock(DomainError):
    code = "OUT_OF_STOCK"
    title = "Not enough units in stock"


class ProductUnavailable(DomainError):
    code = "PRODUCT_UNAVAILABLE"
    title = "This product cannot be bought"


class VersionConflict(DomainError):
    code = "VERSION_CONFLICT"
    title = "The resource was changed by someone else"
