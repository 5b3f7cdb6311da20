"""An ``AsyncSqliteSaver`` that saves the writes of tasks finishing together in one transaction.

LangGraph saves each finished task's writes as soon as it returns (``aput_writes``), and
``AsyncSqliteSaver`` gives every call a transaction of its own: four round trips through
aiosqlite's thread, one call after another under the saver's lock, each round trip waiting
for an event loop that is busy with the other workers. At a fan-out of 100 that made SQLite
cost 0.12 of the bare-SDK floor's time (README, Performance). Here a call queues its rows and
waits; one flush at a time takes everything queued and saves it in one transaction, so calls
that arrive while a flush runs share the next one. A call still returns only once its rows are
committed; if a shared transaction fails, it is rolled back and each call's rows are saved in
a transaction of their own, so a bad write fails its own call only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

# The queries and the row layout of AsyncSqliteSaver.aput_writes (langgraph-checkpoint-sqlite
# 3.1.2); tests/test_batched_writes.py checks that both savers store the same rows.
COLUMNS = "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value"
UPSERT_WRITES = f"INSERT OR REPLACE INTO writes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_WRITES = f"INSERT OR IGNORE INTO writes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass
class QueuedWrites:
    """One ``aput_writes`` call waiting for a flush."""

    upsert: bool  # only special channels (errors, interrupts...): the newest value wins
    rows: list[tuple[Any, ...]]
    saved: asyncio.Future[None]


class BatchedWritesSqliteSaver(AsyncSqliteSaver):
    """``AsyncSqliteSaver`` whose concurrent ``aput_writes`` calls share a transaction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued: list[QueuedWrites] = []
        self.flusher: asyncio.Task[None] | None = None

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes; return once they are committed."""
        await self.setup()
        configurable = config["configurable"]
        key = (
            str(configurable["thread_id"]),
            str(configurable["checkpoint_ns"]),
            str(configurable["checkpoint_id"]),
            task_id,
            task_path,
        )
        rows = [
            (*key, WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value))
            for idx, (channel, value) in enumerate(writes)
        ]
        upsert = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        loop = asyncio.get_running_loop()
        queued = QueuedWrites(upsert, rows, loop.create_future())
        self.queued.append(queued)
        if self.flusher is None or self.flusher.done():
            self.flusher = loop.create_task(self.flush())
        await queued.saved

    async def flush(self) -> None:
        """Save what is queued, one transaction a batch, until nothing is."""
        async with self.lock:
            while self.queued:
                batch, self.queued = self.queued, []
                try:
                    error = await self.save(batch)
                    if error is None or len(batch) == 1:
                        for queued in batch:
                            settle(queued.saved, error)
                    else:  # each call alone: only a bad write fails, and only its caller
                        for queued in batch:
                            settle(queued.saved, await self.save([queued]))
                except BaseException:  # cancelled: no caller may wait forever
                    for queued in batch + self.queued:
                        queued.saved.cancel()
                    raise

    async def save(self, batch: list[QueuedWrites]) -> Exception | None:
        """Insert the batch's rows in call order and commit them; the error if that failed."""
        try:
            for upsert, calls in groupby(batch, key=lambda queued: queued.upsert):
                rows = [row for queued in calls for row in queued.rows]
                await self.conn.executemany(UPSERT_WRITES if upsert else INSERT_WRITES, rows)
            await self.conn.commit()
        except Exception as error:
            # Nothing of a failed batch may be committed with the next one; if the rollback
            # fails too (a closed connection), the callers get the first error.
            with contextlib.suppress(Exception):
                await self.conn.rollback()
            return error
        return None


def settle(saved: asyncio.Future[None], error: BaseException | None = None) -> None:
    """Tell a waiting caller how its writes went (unless it stopped waiting)."""
    if saved.done():
        return
    if error is None:
        saved.set_result(None)
    else:
        saved.set_exception(error)
