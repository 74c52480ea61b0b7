"""Products and catalogue positions as the domain sees them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AdjustmentReason(StrEnum):
    """Why a merchant's stock changed (`stock_adjustments.reason`)."""

    CREATED = "CREATED"
    ADJUSTED = "ADJUSTED"


@dataclass(frozen=True, slots=True)
class Product:
    """A product that is not deleted (repositories never return deleted ones)."""

    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    description: str | None
    price: int
    currency: str
    available_units: int
    initial_units: int
    reserved_units: int
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Position:
    """Where a newest-first product list stopped: the sort key of the last product served."""

    created_at: datetime
    id: uuid.UUID

    @classmethod
    def after(cls, product: Product) -> Position:
        return cls(created_at=product.created_at, id=product.id)
