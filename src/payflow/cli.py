"""The `payflow` command: serve, migrate."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from payflow.config import ConfigurationError, Settings
from payflow.core import migrations

app = typer.Typer(help="payflow: a payments backend for digital products.", no_args_is_help=True)


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
    settings = load_settings()
    migrations.upgrade(settings)
    typer.echo("payflow: database is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Apply pending migrations, then serve the API."""
    settings = load_settings()
    migrations.upgrade(settings)
    uvicorn.run(
        "payflow.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
    )


def main() -> None:
    app(prog_name="payflow")


if __name__ == "__main__":  # pragma: no cover
    main()
