"""Aegra's LangGraph connection pool, serving again within seconds of PostgreSQL's return.

Aegra 0.11 shares one psycopg_pool ``AsyncConnectionPool(check=check_connection)`` between its
checkpointer and store (``aegra_api/core/database.py``). After a PostgreSQL restart every idle
connection in it is dead, and the pool learns it only when a client takes one: the check fails
and psycopg_pool 3.3 sleeps 1, 2, 4, 8, 16 s before the same client tries the next idle one, so
six dead connections cost 31 s, past the 30 s wait for a connection. The checkpointer waits for
its connection inside its one ``asyncio.Lock``, so that sleeping client holds up every
checkpointer call of the replica (``threads.get_state`` answered "couldn't get a connection
after 30.00 sec" for 30-60 s after a 10 s outage). Reconnecting backs off too (1 s doubling), so
after a long outage the first new connection may come a minute late.

Once a second this looks at the pool's counters (``get_stats()``). When it has met a dead
connection, ``check()`` tests every idle connection at once (the dead are replaced). When its
connection attempts fail, it tries PostgreSQL itself each second, and once that answers while
the pool has no idle connection, it opens :data:`KICK` connections at once (``resize()`` up and
back). Nothing of Aegra's is changed; the pool is reached through ``aegra_api.core.database``
(pinned Aegra: ``tests/test_library_contracts.py`` checks it is still there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

WATCH_SECONDS = 1.0
"""How often the pool's counters are read."""
KICK = 2
"""Connections opened at once when PostgreSQL answers again and the pool has none idle."""


def _counters(pool: AsyncConnectionPool[Any]) -> tuple[int, int]:
    """(dead connections met, failed connection attempts) since the pool opened."""
    stats = pool.get_stats()
    dead = stats.get("connections_lost", 0) + stats.get("returns_bad", 0)
    return dead, stats.get("connections_errors", 0)


async def _answers(pool: AsyncConnectionPool[Any]) -> bool:
    """Whether PostgreSQL takes a new connection now."""
    try:
        conn = await psycopg.AsyncConnection.connect(str(pool.conninfo), connect_timeout=2)
    except psycopg.Error:
        return False
    await conn.close()
    return True


async def guard(pool_of: Any) -> None:
    """Watch the pool ``pool_of()`` returns (None until Aegra made it), forever."""
    seen_dead = seen_errors = None
    down = False
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        pool = pool_of()
        if pool is None:
            continue
        try:
            dead, errors = _counters(pool)
            if seen_dead is not None and dead > seen_dead:
                await pool.check()  # every idle connection tested now, the dead replaced
                dead, errors = _counters(pool)
            down = down or (seen_errors is not None and errors > seen_errors)
            seen_dead, seen_errors = dead, errors
            if down and await _answers(pool):
                down = False
                if pool.get_stats().get("pool_available", 0) == 0:
                    logger.warning("PostgreSQL is back: opening %d pool connections now", KICK)
                    await pool.resize(pool.min_size + KICK, pool.max_size)
                    await pool.resize(pool.min_size - KICK, pool.max_size)
        except Exception:  # the guard must outlive anything one look meets
            logger.warning("the LangGraph pool guard failed once", exc_info=True)


@contextlib.asynccontextmanager
async def guarding(app: Any) -> AsyncIterator[None]:
    """A lifespan: :func:`guard` Aegra's LangGraph pool while the server runs."""
    from aegra_api.core.database import db_manager

    task = asyncio.create_task(guard(lambda: db_manager.lg_pool), name="langgraph-pool-guard")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
