"""Before a command touches anything: can it reach what its configuration names? Each problem an
operator commonly makes (a database that is down, a database that does not exist, wrong
credentials, Redis down, a SQLite file that is not there) becomes one line naming the variable
and what to do, instead of a driver's traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from payflow.config import Settings

CONNECT_TIMEOUT = 5.0


class Unfit(Exception):
    """The environment cannot serve this command; the message says why and what to do."""


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file the configuration names (None for PostgreSQL or an in-memory database)."""
    if not settings.is_sqlite:
        return None
    database = make_url(settings.async_database_url).database
    return Path(database) if database and database != ":memory:" else None


async def check_database(settings: Settings, *, must_exist: bool = False) -> None:
    """PostgreSQL reachable, its database there, the credentials accepted; a SQLite file present
    when `must_exist` (a command that only reads must not create an empty one)."""
    if settings.is_sqlite:
        path = sqlite_path(settings)
        if must_exist and path is not None and not path.is_file():
            raise Unfit(
                f"DATABASE_URL: the database file {path} does not exist; run `payflow migrate` "
                "(or `payflow serve`) to create it, or point DATABASE_URL at the right file"
            )
        return
    url = make_url(settings.async_database_url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    try:
        connection = await asyncpg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
            timeout=CONNECT_TIMEOUT,
        )
    except asyncpg.InvalidCatalogNameError:
        raise Unfit(
            f"DATABASE_URL: the database {url.database!r} does not exist on {where}; create it "
            f"(createdb {url.database}) or fix the URL"
        ) from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        raise Unfit(
            f"DATABASE_URL: PostgreSQL at {where} refused the user or password in the URL"
        ) from None
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise Unfit(
            f"DATABASE_URL: cannot reach PostgreSQL at {where} ({type(exc).__name__}); is it "
            "running, and are the host and port right?"
        ) from None
    await connection.close()


async def check_redis(settings: Settings) -> None:
    if not settings.redis_url:
        return
    parts = urlsplit(settings.redis_url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    client = Redis.from_url(settings.redis_url, socket_connect_timeout=CONNECT_TIMEOUT)
    try:
        await client.ping()
    except Exception as exc:
        raise Unfit(
            f"REDIS_URL: cannot reach Redis at {where} ({type(exc).__name__}); is it running? "
            "Unset REDIS_URL to use the in-process cache"
        ) from None
    finally:
        await client.aclose()


def run(settings: Settings, *, must_exist: bool = False, redis: bool = False) -> None:
    async def checks() -> None:
        await check_database(settings, must_exist=must_exist)
        if redis:
            await check_redis(settings)

    asyncio.run(checks())
