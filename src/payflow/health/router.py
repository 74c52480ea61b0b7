"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from payflow.core.errors import ServiceUnavailable
from payflow.core.schemas import problem_responses
from payflow.wiring import ContextDep

router = APIRouter(tags=["operations"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", responses=problem_responses("SERVICE_UNAVAILABLE"))
async def ready(ctx: ContextDep) -> dict[str, object]:
    checks: dict[str, str] = {}
    try:
        await ctx.db.ping()
        checks["database"] = "ok"
    except Exception:  # any failure to reach the database means not ready
        checks["database"] = "unavailable"
    if ctx.settings.redis_url:
        checks["redis"] = "ok" if await ctx.cache.ping() else "unavailable"
    down = sorted(name for name, value in checks.items() if value != "ok")
    if down:
        raise ServiceUnavailable("Not ready: " + ", ".join(down) + " unreachable")
    return {"status": "ok", "checks": checks}


@router.get("/metrics", response_class=Response)
async def metrics(ctx: ContextDep) -> Response:
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
