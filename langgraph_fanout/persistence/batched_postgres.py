"""``AsyncPostgresSaver`` with batched task writes (``batched_writes.py`` beside it)."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from langgraph_fanout.persistence.batched_writes import BatchedWrites, QueuedWrites, by_query
from langgraph_fanout.persistence.deferred_deletes import DeferredThreadDeletes


class BatchedWritesPostgresSaver(BatchedWrites, AsyncPostgresSaver):
    """``AsyncPostgresSaver`` whose concurrent ``aput_writes`` calls share a transaction."""

    async def save(self, batch: list[QueuedWrites]) -> Exception | None:
        """Serialize in a thread, then run the inserts in one pipelined transaction.

        The pipeline alone commits what it sent when the client raises or is cancelled in it
        (a value the driver cannot encode): the explicit transaction rolls that back.
        """
        try:
            groups = await asyncio.to_thread(self.dump, batch)
            async with self._cursor(pipeline=True) as cur, cur.connection.transaction():
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
