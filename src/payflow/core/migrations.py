"""Applying payflow's Alembic migrations (shipped inside the package) to the configured database."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config

from payflow.config import Settings


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("payflow") / "migrations"))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["database_url"] = settings.async_database_url
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision`. Must be called outside a running event loop."""
    command.upgrade(alembic_config(settings), revision)
