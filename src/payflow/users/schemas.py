"""The user on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime

from payflow.core.schemas import ResponseModel
from payflow.users.models import Role
from payflow.users.records import User


class UserOut(ResponseModel):
    id: uuid.UUID
    email: str
    role: Role
    first_name: str | None
    last_name: str | None
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            role=user.role,
            first_name=user.first_name,
            last_name=user.last_name,
            is_active=user.is_active,
            last_login_at=user.last_login_at,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )
