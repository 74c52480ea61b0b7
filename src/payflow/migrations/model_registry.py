"""Every table payflow's migrations create, on the shared MetaData: Alembic's target metadata.

Importing this module imports every domain's `models.py` and core's table modules, so that
autogenerate (and `alembic check`) compares the whole schema; a table left out here would be
proposed for dropping. It lives beside migrations/env.py, outside `payflow.core`, because only
migrations need every domain at once: core itself imports no domain package.
tests/core/test_alembic_check.py fails when a `models.py` is missing here.
"""

from payflow.auth import models as auth_models
from payflow.core import idempotency_models
from payflow.core.tables import metadata
from payflow.orders import models as order_models
from payflow.payments import models as payment_models
from payflow.products import models as product_models
from payflow.users import models as user_models
from payflow.wallets import models as wallet_models

__all__ = [
    "auth_models",
    "idempotency_models",
    "metadata",
    "order_models",
    "payment_models",
    "product_models",
    "user_models",
    "wallet_models",
]
