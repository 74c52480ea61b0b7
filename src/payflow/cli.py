"""The `payflow` command: serve, migrate, audit, demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import traceback
from datetime import timedelta
from types import FrameType
from typing import Annotated, NoReturn

import typer
import uvicorn
from pydantic import ValidationError

from payflow import demo as demo_seed
from payflow import preflight
from payflow.audit.service import AuditReport, run_audit
from payflow.config import ConfigurationError, Settings
from payflow.core import migrations
from payflow.core.db import Database
from payflow.core.errors import ServiceUnavailable

app = typer.Typer(help="payflow: a payments backend for digital products.", no_args_is_help=True)
_debug = False


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback behind an error message")
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _refuse(message: str, cause: BaseException, settings: Settings | None = None) -> NoReturn:
    """One line on stderr and exit code 2; the traceback too with --debug or LOG_LEVEL=DEBUG."""
    level = (settings.log_level if settings else os.environ.get("LOG_LEVEL", "")).upper()
    if _debug or level == "DEBUG":
        traceback.print_exception(cause)
    typer.echo(f"payflow: {message}", err=True)
    raise typer.Exit(code=2) from cause


def _ready(*, must_exist: bool = False, redis: bool = False) -> Settings:
    """The configuration, checked against what it names (preflight.py) before any work."""
    settings = load_settings()
    try:
        preflight.run(settings, must_exist=must_exist, redis=redis)
    except preflight.Unfit as exc:
        _refuse(str(exc), exc, settings)
    return settings


def _describe(exc: ConfigurationError | ValidationError) -> str:
    """The problems only: pydantic's own text echoes part of the input, secrets included."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    messages: list[str] = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        message = error["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in error["loc"]).upper()
        messages.append(f"{field}: {message}" if field else message)
    return "; ".join(messages)


def load_settings() -> Settings:
    """The configuration, or a readable refusal (exit code 2) when it cannot be used."""
    try:
        return Settings()
    except (ConfigurationError, ValidationError) as exc:
        typer.echo(f"payflow: configuration error: {_describe(exc)}", err=True)
        raise typer.Exit(code=2) from exc


@app.command()
def migrate() -> None:
    """Apply every pending database migration."""
    settings = _ready()
    migrations.upgrade(settings)
    typer.echo("payflow: database is up to date")


@app.command()
def audit(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Check the money invariants (docs/api.md, Invariants); exit 1 naming each violation, 0 when all hold."""
    settings = _ready(must_exist=True)
    try:
        report = asyncio.run(_audit(settings))
    except ServiceUnavailable as exc:
        _refuse(f"DATABASE_URL: {exc.detail}; is the database running?", exc, settings)
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.as_text())
    if not report.ok:
        raise typer.Exit(code=1)


async def _audit(settings: Settings) -> AuditReport:
    db = Database(settings)
    try:
        return await run_audit(
            db, sweeper_interval=timedelta(seconds=settings.sweeper_interval_seconds)
        )
    finally:
        await db.dispose()


@app.command()
def demo() -> None:
    """Seed a demo merchant, a funded buyer and products; print how to buy in a browser."""
    settings = _ready(redis=True)
    migrations.upgrade(settings)
    try:
        seeded = asyncio.run(demo_seed.seed(settings))
    except demo_seed.DemoError as exc:
        typer.echo(f"payflow: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(demo_seed.instructions(seeded, settings))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Apply pending migrations, then serve the API."""
    settings = _ready(redis=True)
    if workers > 1 and not settings.stripe_secret_key:
        typer.echo(
            "payflow: the built-in payments sandbox keeps its state in one process; use "
            "--workers 1, or run the sandbox on its own (python -m payflow.sandbox) and set "
            "STRIPE_SECRET_KEY=sk_test_... and STRIPE_API_BASE to it",
            err=True,
        )
        raise typer.Exit(code=2)
    if workers > 1 and not settings.redis_url:
        # Each worker would keep its own cache and serve stale balances written by another.
        os.environ["IN_PROCESS_CACHE"] = "false"
    migrations.upgrade(settings)

    def stopped(_signum: int, _frame: FrameType | None) -> None:
        raise typer.Exit(code=0)

    # On SIGTERM or SIGINT uvicorn shuts down gracefully (in-flight requests finish, for up to
    # SHUTDOWN_GRACE_SECONDS), then raises the signal again against the handlers it found: with
    # these, a completed graceful shutdown exits 0 instead of dying of the signal.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stopped)
    uvicorn.run(
        "payflow.serving:create_worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=settings.http_keepalive_timeout,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def main() -> None:
    app(prog_name="payflow")


if __name__ == "__main__":  # pragma: no cover
    main()
