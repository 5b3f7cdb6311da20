"""``AsyncPostgresSaver`` operations that ride out an outage on a new connection (a mixin).

Each operation runs through :func:`~langgraph_fanout.persistence.outages.ride_out`: a
connection error makes it wait, connect again and retry, until the database answers or the
outage lasts past its limit. The saver keeps one connection, as the library's
``from_conn_string`` makes it; it is replaced when it dies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self, TypeVar, cast

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg.rows import dict_row

from langgraph_fanout.persistence.outages import outage_of, ride_out

T = TypeVar("T")


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """A connection as the library's ``from_conn_string`` opens it."""
    return await psycopg.AsyncConnection.connect(
        url, autocommit=True, prepare_threshold=0, row_factory=dict_row
    )


class ReconnectingSaver(AsyncPostgresSaver):
    """Mixin for an ``AsyncPostgresSaver``: operations retried through outages."""

    url: str

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls, conn_string: str, *, pipeline: bool = False, serde: SerializerProtocol | None = None
    ) -> AsyncIterator[Self]:
        """A saver on a new connection to ``conn_string``, as the library's (no pipeline)."""
        if pipeline:
            raise ValueError("a reconnecting saver keeps no pipeline across connections")
        async with super().from_conn_string(conn_string, serde=serde) as opened:
            saver = cast(Self, opened)
            saver.url = conn_string
            try:
                yield saver
            finally:
                await saver.conn.close()  # a replacement, if the first one died

    conn: psycopg.AsyncConnection[Any]

    async def reconnect(self) -> None:
        """Replace the connection if it broke (the database may still be down: then raise)."""
        async with self.lock:
            if self.conn.broken:
                self.conn = await connect(self.url)

    async def _ride_out(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation``, through outages.

        Once only, as the library does, on a connection its owner closed (the saver's context
        has ended): there is nothing to wait for.
        """
        if self.conn.closed and not self.conn.broken:
            return await operation()
        return await ride_out(outage_of(self.url), operation, self.reconnect)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The library's ``aget_tuple``, through outages."""
        get = super().aget_tuple
        return await self._ride_out(lambda: get(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """The library's ``alist``, read whole through outages, then yielded."""
        list_ = super().alist

        async def read() -> list[CheckpointTuple]:
            return [c async for c in list_(config, filter=filter, before=before, limit=limit)]

        for checkpoint in await self._ride_out(read):
            yield checkpoint

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """The library's ``aput`` (an upsert: safe to repeat), through outages."""
        put = super().aput
        return await self._ride_out(lambda: put(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """The library's ``aput_writes`` (rows already there are kept), through outages."""
        put = super().aput_writes
        await self._ride_out(lambda: put(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """The library's ``adelete_thread``, through outages."""
        delete = super().adelete_thread
        await self._ride_out(lambda: delete(thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """The library's ``aprune``, through outages."""
        prune = super().aprune
        await self._ride_out(lambda: prune(thread_ids, strategy=strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """The library's ``aget_delta_channel_history``, through outages."""
        history = super().aget_delta_channel_history
        return await self._ride_out(lambda: history(config=config, channels=channels))
