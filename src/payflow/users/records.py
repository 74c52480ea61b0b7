"""The user as the domain sees it (a plain immutable record, not an ORM object)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from payflow.users.models import Role


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    email: str
    password_hash: str
    role: Role
    first_name: str | None
    last_name: str | None
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
