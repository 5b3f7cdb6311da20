"""``AsyncSqliteSaver`` with batched task writes (``batched_writes.py`` beside it)."""

from __future__ import annotations

import contextlib

from langgraph.checkpoint.base import WRITES_IDX_MAP
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_fanout.persistence.batched_writes import BatchedWrites, QueuedWrites, by_query
from langgraph_fanout.persistence.deferred_deletes import DeferredThreadDeletes

# The queries and the row layout of AsyncSqliteSaver.aput_writes (langgraph-checkpoint-sqlite
# 3.1.2); tests/test_batched_writes.py checks that both savers store the same rows.
COLUMNS = "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value"
SQLITE_UPSERT = f"INSERT OR REPLACE INTO writes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
SQLITE_INSERT = f"INSERT OR IGNORE INTO writes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


class BatchedWritesSqliteSaver(BatchedWrites, AsyncSqliteSaver):
    """``AsyncSqliteSaver`` whose concurrent ``aput_writes`` calls share a transaction."""

    async def save(self, batch: list[QueuedWrites]) -> Exception | None:
        """Insert the batch's rows and commit them (see :meth:`BatchedWrites.save`)."""
        try:
            await self.setup()
            async with self.lock:
                try:
                    for upsert, calls in by_query(batch):
                        rows = [
                            (
                                *q.key,
                                WRITES_IDX_MAP.get(channel, idx),
                                channel,
                                *self.serde.dumps_typed(value),
                            )
                            for q in calls
                            for idx, (channel, value) in enumerate(q.writes)
                        ]
                        query = SQLITE_UPSERT if upsert else SQLITE_INSERT
                        await self.conn.executemany(query, rows)
                    await self.conn.commit()
                except BaseException:
                    # Cancelled too: aiosqlite still runs what was sent, and the next commit
                    # would take it. If the rollback fails (a closed connection), the callers
                    # get the first error.
                    with contextlib.suppress(Exception):
                        await self.conn.rollback()
                    raise
        except Exception as error:
            return error
        return None


class DeferredDeleteSqliteSaver(DeferredThreadDeletes, BatchedWritesSqliteSaver):
    """``AsyncSqliteSaver`` with batched writes and deferred thread deletes (for the server)."""
