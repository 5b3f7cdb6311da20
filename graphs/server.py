"""The checkpointer of the ``langgraph dev`` server, named in ``langgraph.json``.

The server opens it at start-up (``"checkpointer": {"path": "./graphs/server.py:checkpointer"}``)
in place of its own in-memory store, so thread state lives in the database the CLI uses: the
SQLite file or PostgreSQL URL in $FANOUT_DB (default ``.fanout/checkpoints.sqlite``, relative to
the server's working directory). Every step and every finished worker is written at once, so a
thread's state survives a hard kill of the server. The graphs in ``graphs/evaluation.py`` etc.
stay compiled without a checkpointer: the server refuses graphs that bring their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver

from graphs.checkpointer import aopen_checkpointer, db_url

logger = logging.getLogger(__name__)


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """The saver for $FANOUT_DB, open for the server's lifetime (tables made on first use)."""
    async with aopen_checkpointer(db_url()) as saver:
        pending = _defer_thread_deletes(saver)
        try:
            yield saver
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


def _defer_thread_deletes(saver: BaseCheckpointSaver) -> set[asyncio.Task[None]]:
    """Make ``saver.adelete_thread`` return at once and delete in a background task.

    langgraph-runtime-inmem 0.36.7 deletes a thread (also the temporary thread of every run
    made without one, e.g. ``POST /runs/wait``) by finding its index in a list, awaiting
    ``adelete_thread`` of the checkpointer, then popping that index. A database delete yields to
    the event loop, so concurrent deletes pop the wrong thread or fail, and the client of a run
    whose thread vanished waits forever. Returning without yielding keeps that section atomic.
    Returns the set of deletes still running.
    """
    delete = saver.adelete_thread
    pending: set[asyncio.Task[None]] = set()

    def done(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("deleting a thread's checkpoints failed", exc_info=error)

    async def adelete_thread(thread_id: str) -> None:
        task = asyncio.get_running_loop().create_task(delete(thread_id))
        pending.add(task)
        task.add_done_callback(done)

    saver.adelete_thread = adelete_thread  # type: ignore[method-assign]
    return pending
