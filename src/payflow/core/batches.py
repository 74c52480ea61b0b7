"""Deleting rows a bounded batch at a time, for jobs that clean up behind live traffic."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


async def delete_batch(
    conn: AsyncConnection,
    table: sa.Table,
    condition: sa.ColumnElement[bool],
    limit: int,
    *returning: sa.ColumnElement[Any],
) -> list[sa.Row[Any]]:
    """Delete at most `limit` rows of `table` that meet `condition`; the `returning` columns of
    each (one row per deleted row; none asked = one empty row each, for counting).

    One short statement, so its transaction holds few locks for a short time. SKIP LOCKED: a row
    that some request (or another cleaner) holds is left for a later round instead of waited for
    (PostgreSQL; SQLite has one writer and no row locks). The condition is repeated on the DELETE,
    which re-checks it on the newest row version, so a row that changed meanwhile is kept."""
    # MATERIALIZED: the batch is chosen once. Inlined, PostgreSQL may re-run the subquery for
    # every row it deletes, and each re-run skips the rows this statement has just deleted (they
    # are locked by itself) and picks new ones, until no row meets the condition.
    batch = (
        sa.select(table.c.id)
        .where(condition)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte(f"{table.name}_batch")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    statement = sa.delete(table).where(table.c.id.in_(sa.select(batch.c.id)), condition)
    result = await conn.execute(statement.returning(*(returning or (table.c.id,))))
    return list(result.all())
