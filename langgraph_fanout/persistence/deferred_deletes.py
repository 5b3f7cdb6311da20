"""Thread deletes that return at once, for the ``langgraph dev`` server (a saver mixin).

langgraph-runtime-inmem 0.36.7 deletes a thread (also the temporary thread of every run made
without one, e.g. ``POST /runs/wait``) by finding its index in a list, awaiting the
checkpointer's ``adelete_thread``, then popping that index. A database delete yields to the
event loop, so concurrent deletes pop the wrong thread, and the client of a run whose thread
vanished waits forever. These savers' ``adelete_thread`` schedules the delete and returns
without yielding, which keeps that section atomic; every later read or write of the same
thread waits until its delete has finished, so a thread deleted and created again under the
same id never sees (or loses) the other's checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

logger = logging.getLogger(__name__)


class DeferredThreadDeletes(BaseCheckpointSaver[Any]):
    """Mixin for an async saver: deletes finish in the background, in order per thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deleting: dict[str, asyncio.Task[None]] = {}

    async def adelete_thread(self, thread_id: str) -> None:
        """Start deleting ``thread_id``'s checkpoints; return without yielding."""
        task = asyncio.get_running_loop().create_task(
            self._delete(thread_id, self.deleting.get(thread_id))
        )
        self.deleting[thread_id] = task
        task.add_done_callback(partial(self._deleted, thread_id))

    async def _delete(self, thread_id: str, earlier: asyncio.Task[None] | None) -> None:
        if earlier is not None:
            await asyncio.wait([earlier])
        await super().adelete_thread(thread_id)

    def _deleted(self, thread_id: str, task: asyncio.Task[None]) -> None:
        if self.deleting.get(thread_id) is task:
            del self.deleting[thread_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("deleting thread %s's checkpoints failed", thread_id, exc_info=error)

    async def settled(self, *thread_ids: str | None) -> None:
        """Wait for pending deletes of ``thread_ids`` (of every thread if one is None)."""
        if any(t is None for t in thread_ids):
            pending = list(self.deleting.values())
        else:
            pending = [self.deleting[t] for t in thread_ids if t in self.deleting]
        if pending:
            await asyncio.wait(pending)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, once any delete of its thread is done."""
        await self.settled(_thread(config))
        return await super().aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints matching the arguments, once pending deletes they cover are done."""
        await self.settled(_thread(config))
        async for checkpoint in super().alist(config, filter=filter, before=before, limit=limit):
            yield checkpoint

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint, after any pending delete of its thread."""
        await self.settled(_thread(config))
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes, after any pending delete of its thread."""
        await self.settled(_thread(config))
        await super().aput_writes(config, writes, task_id, task_path)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread, after pending deletes of both threads."""
        await self.settled(source_thread_id, target_thread_id)
        await super().acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads, after their pending deletes."""
        await self.settled(*thread_ids)
        await super().aprune(thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """A thread's channel history, once any delete of the thread is done."""
        await self.settled(_thread(config))
        return await super().aget_delta_channel_history(config=config, channels=channels)


def _thread(config: RunnableConfig | None) -> str | None:
    thread_id = ((config or {}).get("configurable") or {}).get("thread_id")
    return None if thread_id is None else str(thread_id)
