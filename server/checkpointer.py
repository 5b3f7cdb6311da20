"""The checkpointer of the ``langgraph dev`` server, named in ``langgraph.json``.

The server opens it at start-up (``"checkpointer": {"path": "./server/checkpointer.py:..."}``)
in place of its own in-memory store, so thread state lives in the database the CLI uses: the
SQLite file or PostgreSQL URL in $FANOUT_DB (default ``.fanout/checkpoints.sqlite``, relative
to the server's working directory). Every step and every finished worker is written at once,
so a thread's state survives a hard kill of the server. The graphs in ``graphs/`` stay
compiled without a checkpointer: the server refuses graphs that bring their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver

from persistence.checkpointer import aopen_checkpointer, db_url
from persistence.deferred_deletes import DeferredThreadDeletes


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """The saver for $FANOUT_DB, open for the server's lifetime (tables made on first use).

    Thread deletes are deferred (``persistence/deferred_deletes.py``); the ones still running
    at shutdown are finished before the database closes.
    """
    async with aopen_checkpointer(db_url(), defer_thread_deletes=True) as saver:
        try:
            yield saver
        finally:
            if isinstance(saver, DeferredThreadDeletes):
                await saver.settled(None)
