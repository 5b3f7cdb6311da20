"""Fenced writes on PostgreSQL: a holder that lost its thread can never write to it again.

The thread lock (``thread_lock.py``) is a session advisory lock, and a session dies with its
connection: after a PostgreSQL restart, a network cut, or a holder frozen long enough for its
connection to be dropped, another process can take the thread while the first still runs. So
every taking of a thread raises the thread's *generation* in ``fanout_thread_holders``, and
every checkpoint write of a holder checks, in the same transaction, that the generation is
still the one it took: the row is read ``FOR SHARE``, so a takeover waits for a write in
progress, and a write after a takeover is refused with :class:`ThreadTakenOverError`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow

from langgraph_fanout.persistence.thread_lock import FENCE_KEY, ThreadTakenOverError

HOLDERS_TABLE = """
CREATE TABLE IF NOT EXISTS fanout_thread_holders (
    thread_id TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    holder TEXT NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
TAKE = """
INSERT INTO fanout_thread_holders (thread_id, generation, holder) VALUES (%s, 1, %s)
ON CONFLICT (thread_id) DO UPDATE
SET generation = fanout_thread_holders.generation + 1, holder = EXCLUDED.holder, taken_at = now()
RETURNING generation"""
HOLDERS = """
SELECT thread_id, generation, holder, taken_at FROM fanout_thread_holders
WHERE thread_id = ANY(%s) FOR SHARE"""
SETUP_LOCK = "hashtextextended('langgraph-fanout setup', 0)"
"""The advisory lock held while one process creates or migrates the tables: concurrent
``CREATE TABLE IF NOT EXISTS`` of a new table fail (``pg_type_typname_nsp_index``) but in one."""
HOLDER = "SELECT generation, holder, taken_at FROM fanout_thread_holders WHERE thread_id = %s"


def this_holder() -> str:
    """How this process is named to another that finds the thread taken."""
    return f"process {os.getpid()} on {socket.gethostname()}"


@dataclass(frozen=True)
class Fence:
    """A thread as its holder took it: the generation its writes must still find."""

    thread_id: str
    generation: int


@dataclass(frozen=True)
class Holder:
    """Who took a thread last, and when."""

    generation: int
    holder: str
    taken_at: datetime


async def take(conn: AsyncConnection[Any], thread_id: str) -> int:
    """Record that this process holds ``thread_id`` (``conn`` holds its lock); the generation."""
    from psycopg.errors import UndefinedTable

    try:
        cursor = await conn.execute(TAKE, (thread_id, this_holder()))
    except UndefinedTable:  # a database no saver has set up yet
        async with conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({SETUP_LOCK})")
            await conn.execute(HOLDERS_TABLE)
        cursor = await conn.execute(TAKE, (thread_id, this_holder()))
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def holder_of(conn: AsyncConnection[Any], thread_id: str) -> Holder | None:
    """Who took ``thread_id`` last (None: nobody ever did)."""
    cursor = await conn.execute(HOLDER, (thread_id,))
    row = await cursor.fetchone()
    return None if row is None else Holder(int(row[0]), str(row[1]), row[2])


async def check(cursor: AsyncCursor[DictRow], fences: Iterable[Fence]) -> None:
    """Refuse the write transaction ``cursor`` is in unless every fence still holds.

    Raises:
        ThreadTakenOverError: a thread was taken by another process since it was fenced.
    """
    wanted = {fence.thread_id: fence.generation for fence in fences}
    if not wanted:
        return
    await cursor.execute(HOLDERS, (list(wanted),))
    found = {row["thread_id"]: row for row in await cursor.fetchall()}
    for thread_id, generation in wanted.items():
        row = found.get(thread_id)
        if row is None or row["generation"] != generation:
            holder = row["holder"] if row else "a process that removed its record"
            raise ThreadTakenOverError(thread_id, holder, row["taken_at"] if row else None)


_FENCE: ContextVar[Fence | None] = ContextVar("fanout_fence", default=None)
"""The fence of the checkpoint :meth:`FencedWrites.aput` is writing (read by ``_cursor``)."""


class FencedWrites(AsyncPostgresSaver):
    """Mixin for an ``AsyncPostgresSaver``: the writes of a holder check its fence.

    A holder puts its generation in its run's config (:data:`FENCE_KEY`), which LangGraph
    hands to every write of the run, background ones too; a write still on its way after its
    holder let go is checked against that generation like the others. Task writes check it in
    their own transaction (``batched_postgres.py``); a checkpoint (``aput``) in the
    transaction its cursor opens here.
    """

    @staticmethod
    def fences_of(configs: Iterable[RunnableConfig]) -> list[Fence]:
        """The fences the writes with ``configs`` must still find."""
        fences = {
            Fence(str(configurable["thread_id"]), int(configurable[FENCE_KEY]))
            for configurable in (config["configurable"] for config in configs)
            if configurable.get(FENCE_KEY) is not None
        }
        return sorted(fences, key=lambda fence: fence.thread_id)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; refused if its thread was taken over."""
        fences = self.fences_of([config])
        token = _FENCE.set(fences[0] if fences else None)
        try:
            return await super().aput(config, checkpoint, metadata, new_versions)
        finally:
            _FENCE.reset(token)

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        """The library's cursor; in a transaction that checks the fence when ``aput`` has one."""
        fence = _FENCE.get()
        async with super()._cursor(pipeline=pipeline) as cursor:
            if fence is None:
                yield cursor
            else:
                async with cursor.connection.transaction():
                    await check(cursor, [fence])
                    yield cursor
