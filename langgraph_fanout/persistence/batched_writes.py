"""A mixin for async savers: the writes of tasks finishing together go in one transaction.

LangGraph saves each finished task's writes as soon as it returns (``aput_writes``), and the
library's savers give every call a transaction of its own: on SQLite four round trips through
aiosqlite's thread, on PostgreSQL a serialization in a thread and a commit, one call after
another under the saver's lock, each waiting for an event loop that is busy with the other
workers. At a fan-out of 100 that made SQLite cost 0.12-0.21 of the bare-SDK floor's time
(README, Performance). Here a call queues its writes and waits; one flush at a time takes
everything queued and saves it in one transaction
(``langgraph_fanout/persistence/batched_sqlite.py``,
``langgraph_fanout/persistence/batched_postgres.py``), so calls that arrive while a flush runs
share the next one. A call still returns only once its writes are committed; if a shared
transaction fails, it is rolled back and each call's writes are saved in a transaction of their
own, so a bad write fails its own call only. Functions in ``saved_listeners`` hear of each task
whose writes are committed (the CLI's progress view says "done" only then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver


@dataclass
class QueuedWrites:
    """One ``aput_writes`` call waiting for a flush."""

    config: RunnableConfig
    writes: Sequence[tuple[str, Any]]
    task_id: str
    task_path: str
    saved: asyncio.Future[None]

    @property
    def upsert(self) -> bool:
        """Only special channels (errors, interrupts...): the newest value wins."""
        return all(channel in WRITES_IDX_MAP for channel, _ in self.writes)

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """The columns every row of this call starts with."""
        configurable = self.config["configurable"]
        return (
            str(configurable["thread_id"]),
            str(configurable["checkpoint_ns"]),
            str(configurable["checkpoint_id"]),
            self.task_id,
            self.task_path,
        )


def by_query(batch: list[QueuedWrites]) -> Iterator[tuple[bool, list[QueuedWrites]]]:
    """The batch in call order, split where it changes between upserts and inserts."""
    for upsert, calls in groupby(batch, key=lambda queued: queued.upsert):
        yield upsert, list(calls)


class WritesNotSavedError(RuntimeError):
    """A task's writes were not saved: the flush that held them was cancelled or failed."""


class BatchedWrites(BaseCheckpointSaver[Any]):
    """Mixin for an async saver: concurrent ``aput_writes`` calls share a transaction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued: list[QueuedWrites] = []
        self.flusher: asyncio.Task[None] | None = None
        # Each is called with a task's id once that task's writes are committed.
        self.saved_listeners: list[Callable[[str], None]] = []

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes; return once they are committed."""
        loop = asyncio.get_running_loop()
        queued = QueuedWrites(config, writes, task_id, task_path, loop.create_future())
        self.queued.append(queued)
        if self.flusher is None or self.flusher.done():
            self.flusher = loop.create_task(self.flush())
        await queued.saved
        for listener in self.saved_listeners:
            listener(task_id)

    async def flush(self) -> None:
        """Save what is queued, one transaction a batch, until nothing is."""
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
            except BaseException as exc:
                # Cancelled (the event loop is closing) or a bug: every waiting call fails
                # loudly, not as a cancellation, which LangGraph's background writes ignore,
                # and nothing of it is saved later.
                unsaved, self.queued = batch + self.queued, []
                for queued in unsaved:
                    failure = WritesNotSavedError(f"writes not saved: {exc!r}")
                    failure.__cause__ = exc
                    settle(queued.saved, failure)
                if not isinstance(exc, Exception):
                    raise

    async def save(self, batch: list[QueuedWrites]) -> Exception | None:
        """Save the batch's writes in call order in one transaction; the error if that failed.

        Nothing of a failed or cancelled transaction may be committed later.
        """
        raise NotImplementedError


def settle(saved: asyncio.Future[None], error: BaseException | None = None) -> None:
    """Tell a waiting caller how its writes went (unless it stopped waiting)."""
    if saved.done():
        return
    if error is None:
        saved.set_result(None)
    else:
        saved.set_exception(error)
