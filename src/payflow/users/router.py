"""/users: the authenticated user's own account."""

from __future__ import annotations

from fastapi import APIRouter

from payflow.auth.dependencies import CurrentUser
from payflow.core.schemas import problem_responses
from payflow.users.schemas import UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/me",
    summary="Your account",
    response_model=UserOut,
    responses=problem_responses("UNAUTHORIZED", "ACCOUNT_DISABLED"),
)
async def get_me(user: CurrentUser) -> UserOut:
    """The signed-in user."""
    return UserOut.of(user)
