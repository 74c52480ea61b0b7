"""Imports every domain's tables so that the shared MetaData knows them all (for Alembic and tests)."""

from payflow.auth import models as auth_models
from payflow.core import idempotency_models
from payflow.core.tables import metadata
from payflow.products import models as product_models
from payflow.users import models as user_models
from payflow.wallets import models as wallet_models

__all__ = [
    "auth_models",
    "idempotency_models",
    "metadata",
    "product_models",
    "user_models",
    "wallet_models",
]
