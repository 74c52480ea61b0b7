"""Every SQL statement about users."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.db import Database
from payflow.core.tables import utcnow
from payflow.users.models import Role, users
from payflow.users.records import User


def _to_user(row: Row[tuple[object, ...]]) -> User:
    return _user_of(row._mapping)


def _user_of(data: Mapping[Any, Any]) -> User:
    return User(
        id=data["id"],
        email=data["email"],
        password_hash=data["password_hash"],
        role=Role(data["role"]),
        first_name=data["first_name"],
        last_name=data["last_name"],
        is_active=data["is_active"],
        last_login_at=data["last_login_at"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        deleted_at=data["deleted_at"],
    )


async def insert_user(
    conn: AsyncConnection,
    *,
    email: str,
    password_hash: str,
    role: Role,
    first_name: str | None,
    last_name: str | None,
) -> User:
    now = utcnow()
    result = await conn.execute(
        sa.insert(users)
        .values(
            id=uuid.uuid4(),
            email=email,
            password_hash=password_hash,
            role=role.value,
            first_name=first_name,
            last_name=last_name,
            is_active=True,
            created_at=now,
            updated_at=now,
        )
        .returning(*users.c)
    )
    return _to_user(result.one())


async def email_exists(conn: AsyncConnection, email: str) -> bool:
    """Whether any user, deleted ones included, holds this (normalised) email."""
    result = await conn.execute(sa.select(users.c.id).where(users.c.email == email))
    return result.first() is not None


async def get_live_by_email(conn: AsyncConnection, email: str) -> User | None:
    result = await conn.execute(
        sa.select(users).where(users.c.email == email, users.c.deleted_at.is_(None))
    )
    row = result.first()
    return _to_user(row) if row else None


async def get_live_by_id(conn: AsyncConnection, user_id: uuid.UUID) -> User | None:
    result = await conn.execute(
        sa.select(users).where(users.c.id == user_id, users.c.deleted_at.is_(None))
    )
    row = result.first()
    return _to_user(row) if row else None


# The same read as get_live_by_id, as fixed text for the driver (every authenticated request).
_LIVE_BY_ID_SQL = (
    "SELECT id, email, password_hash, role, first_name, last_name, is_active, last_login_at,"
    " created_at, updated_at, deleted_at FROM users WHERE id = $1::uuid AND deleted_at IS NULL"
)


async def find_live(db: Database, user_id: uuid.UUID) -> User | None:
    """The live user with this id, read on its own (no transaction)."""
    if db.driver is None:
        return await db.read(lambda conn: get_live_by_id(conn, user_id))
    rows = await db.driver.fetch(_LIVE_BY_ID_SQL, user_id, write=False)
    return _user_of(rows[0]) if rows else None


async def record_login(conn: AsyncConnection, user_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(
        sa.update(users).where(users.c.id == user_id).values(last_login_at=at, updated_at=at)
    )


async def set_active(conn: AsyncConnection, user_id: uuid.UUID, active: bool) -> None:
    await conn.execute(
        sa.update(users).where(users.c.id == user_id).values(is_active=active, updated_at=utcnow())
    )
