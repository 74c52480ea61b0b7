"""Request-scoped dependencies shared by every domain."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from payflow.core.context import AppContext


async def get_context(request: Request) -> AppContext:
    return cast(AppContext, request.app.state.context)


ContextDep = Annotated[AppContext, Depends(get_context)]
