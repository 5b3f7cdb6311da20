"""The project's ``AsyncPostgresSaver``: batched task writes, fenced, riding out outages.

Task writes of tasks finishing together share a transaction (``batched_writes.py``); writes to a
thread held through ``thread_lock.py`` check its fence in their transaction (``fencing.py``);
every operation retries through a database outage on a new connection (``reconnecting.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_fanout.persistence import fencing
from langgraph_fanout.persistence.batched_writes import BatchedWrites, QueuedWrites, by_query
from langgraph_fanout.persistence.deferred_deletes import DeferredThreadDeletes
from langgraph_fanout.persistence.reconnecting import ReconnectingSaver, connect

SETUP_LOCK = f"SELECT pg_try_advisory_lock({fencing.SETUP_LOCK})"
SETUP_POLL_SECONDS = 0.1
"""How often a process waiting to set the tables up tries the lock again. Polled, not waited
for in the database: a session waiting there holds a snapshot, which the ``CREATE INDEX
CONCURRENTLY`` of the holder's migration waits for (a deadlock PostgreSQL does not see)."""


class BatchedWritesPostgresSaver(ReconnectingSaver, BatchedWrites, fencing.FencedWrites):
    """``AsyncPostgresSaver`` whose concurrent ``aput_writes`` calls share a transaction."""

    async def setup(self) -> None:
        """Create or migrate the library's tables and the holders table, one process at a time."""
        async with await connect(self.url) as lock:  # the lock ends with this connection
            while True:
                row = await (await lock.execute(SETUP_LOCK)).fetchone()
                if row and row["pg_try_advisory_lock"]:
                    break
                await asyncio.sleep(SETUP_POLL_SECONDS)
            await super().setup()
            async with self._cursor() as cur:
                await cur.execute(fencing.HOLDERS_TABLE)

    async def save(self, batch: list[QueuedWrites]) -> Exception | None:
        """Serialize in a thread, then check the fences and insert, in one transaction.

        The pipeline alone commits what it sent when the client raises or is cancelled in it
        (a value the driver cannot encode): the explicit transaction rolls that back.
        """
        try:
            groups = await asyncio.to_thread(self.dump, batch)
            fences = self.fences_of(queued.config for queued in batch)
            async with self._cursor(pipeline=True) as cur, cur.connection.transaction():
                await fencing.check(cur, fences)
                for upsert, rows in groups:
                    query = (
                        self.UPSERT_CHECKPOINT_WRITES_SQL
                        if upsert
                        else self.INSERT_CHECKPOINT_WRITES_SQL
                    )
                    await cur.executemany(query, rows)
        except Exception as error:
            return error
        return None

    def dump(self, batch: list[QueuedWrites]) -> list[tuple[bool, list[tuple[Any, ...]]]]:
        """Each run of upserts or inserts, with its rows as the library saver makes them."""
        return [
            (upsert, [row for q in calls for row in self._dump_writes(*q.key, q.writes)])
            for upsert, calls in by_query(batch)
        ]


class DeferredDeletePostgresSaver(DeferredThreadDeletes, BatchedWritesPostgresSaver):
    """``AsyncPostgresSaver`` with batched writes and deferred thread deletes (for the server)."""
