"""Running a test's own statements as a unit of work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.unit_of_work import UnitOfWork

T = TypeVar("T")


def with_conn(
    work: Callable[[AsyncConnection], Awaitable[T]],
) -> Callable[[UnitOfWork], Awaitable[T]]:
    """`Database.transaction` hands its work a unit of work; most tests only need its connection."""
    return lambda uow: work(uow.conn)
