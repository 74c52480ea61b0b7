"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from payflow.core.errors import ServiceUnavailable, Unauthorized
from payflow.core.schemas import problem_responses
from payflow.wiring import ContextDep

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="Liveness")
async def live() -> dict[str, str]:
    """Answers while the process serves requests; it checks nothing else."""
    return {"status": "ok"}


@router.get(
    "/health/ready", summary="Readiness", responses=problem_responses("SERVICE_UNAVAILABLE")
)
async def ready(ctx: ContextDep) -> dict[str, object]:
    """Answers 200 when the database (and Redis, when configured) can be reached, 503 otherwise."""
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


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses=problem_responses("UNAUTHORIZED"),
)
async def metrics(ctx: ContextDep, request: Request) -> Response:
    """Prometheus metrics; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    expected = ctx.settings.metrics_token
    if expected is not None:
        # Read here, not declared: without METRICS_TOKEN the header means nothing to this route.
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.encode() if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(given, expected.encode()):
            raise Unauthorized("The metrics need the METRICS_TOKEN bearer token")
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
