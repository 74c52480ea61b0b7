"""The unit of work (core/unit_of_work.py, run by Database.transaction): after-commit hooks run
once, only after a successful commit; a rolled-back or re-run attempt leaves no hook behind; a
failing hook cannot undo or hide a commit; an idempotent replay runs no work and so no hook."""

from __future__ import annotations

import uuid

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.db import Database
from payflow.core.errors import DomainError
from payflow.core.idempotency import Answered, IdempotentRequest, json_response, scope_for
from payflow.core.idempotency.runner import run
from payflow.core.unit_of_work import UnitOfWork
from payflow.users.models import users
from payflow.wiring import AppContext
from tests.support import register


class _Refused(DomainError):
    code = "OUT_OF_STOCK"
    title = "refused"


def _db(app: FastAPI) -> Database:
    context: AppContext = app.state.context
    return context.db


async def _count_users(db: Database) -> int:
    async def count(conn: AsyncConnection) -> int:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(users)) or 0)

    return await db.read(count)


async def test_hooks_run_once_after_the_commit_and_see_it(app: FastAPI) -> None:
    db = _db(app)
    seen: list[int] = []

    async def work(uow: UnitOfWork) -> str:
        await uow.conn.execute(sa.text("SELECT 1"))

        async def hook() -> None:
            seen.append(await _count_users(db))  # a new connection: the commit is visible

        uow.after_commit(hook)
        uow.after_commit(hook)
        assert seen == []  # nothing runs before the commit
        return "done"

    assert await db.transaction(work) == "done"
    assert seen == [0, 0]


async def test_a_rolled_back_attempt_runs_no_hook(app: FastAPI) -> None:
    db = _db(app)
    ran: list[str] = []

    async def work(uow: UnitOfWork) -> None:
        async def hook() -> None:
            ran.append("hook")

        uow.after_commit(hook)
        raise _Refused("no")

    with pytest.raises(_Refused):
        await db.transaction(work)
    assert ran == []


async def test_only_the_committed_attempt_of_a_re_run_runs_its_hooks(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conflict re-runs the work with a new unit of work: the first attempt's hook is void."""
    db = _db(app)
    attempts: list[int] = []
    ran: list[int] = []

    class _Conflict(DBAPIError):
        pass

    def conflict() -> DBAPIError:
        orig = Exception("database is locked")
        return _Conflict("UPDATE", {}, orig)

    async def work(uow: UnitOfWork) -> None:
        attempt = len(attempts)
        attempts.append(attempt)

        async def hook() -> None:
            ran.append(attempt)

        uow.after_commit(hook)
        if attempt == 0:
            raise conflict()

    await db.transaction(work)
    assert attempts == [0, 1]
    assert ran == [1]


async def test_a_failing_hook_is_logged_and_the_commit_stands(app: FastAPI) -> None:
    db = _db(app)
    ran: list[str] = []

    async def work(uow: UnitOfWork) -> str:
        async def broken() -> None:
            raise RuntimeError("cache down")

        async def after() -> None:
            ran.append("after")

        uow.after_commit(broken)
        uow.after_commit(after)
        return "committed"

    assert await db.transaction(work) == "committed"
    assert ran == ["after"]  # the hooks after a failing one still run


async def test_an_idempotent_replay_runs_no_work_and_no_hook(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    db = _db(app)
    user_id = uuid.UUID((await register(client)).id)
    runs: list[str] = []
    hooks: list[str] = []
    request: IdempotentRequest[str] = IdempotentRequest(
        scope_for(user_id, "tests.unit_of_work", "key-1", {"n": 1}),
        lambda value: json_response(201, {"value": value}),
        instance="/tests",
        request_id=None,
    )

    async def work(uow: UnitOfWork) -> str:
        runs.append("work")

        async def hook() -> None:
            hooks.append("hook")

        uow.after_commit(hook)
        return "first"

    assert await run(db, request, work) == "first"
    with pytest.raises(Answered) as replay:
        await run(db, request, work)
    assert replay.value.response.replayed
    assert replay.value.response.body == b'{"value":"first"}'
    assert runs == ["work"]
    assert hooks == ["hook"]
