"""Database helpers for tests: a test's own statements as a unit of work, PostgreSQL-only tests."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.unit_of_work import UnitOfWork

T = TypeVar("T")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


def with_conn(
    work: Callable[[AsyncConnection], Awaitable[T]],
) -> Callable[[UnitOfWork], Awaitable[T]]:
    """`Database.transaction` hands its work a unit of work; most tests only need its connection."""
    return lambda uow: work(uow.conn)


def postgres_only(fixture: str) -> pytest.MarkDecorator:
    """Run a test on PostgreSQL only (through `fixture`, parametrized indirectly); without
    TEST_DATABASE_URL it is reported skipped, saying how to run it."""
    return pytest.mark.parametrize(
        fixture,
        [
            pytest.param(
                "postgres",
                marks=pytest.mark.skipif(
                    not TEST_DATABASE_URL, reason="PostgreSQL only: set TEST_DATABASE_URL to run"
                ),
            )
        ],
        indirect=True,
    )
