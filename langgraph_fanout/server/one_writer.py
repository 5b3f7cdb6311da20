"""The served graphs hold their thread's lock while they run, as ``fanout`` does.

A server's run and a ``fanout resume`` of the same thread must never both run it
(``langgraph_fanout/persistence/thread_lock.py``). Every run the LangGraph API servers make goes
through the graph's ``astream`` (``runs.wait``, ``runs.stream``, through ``astream_events`` too),
so the graph ``langgraph_fanout/server/graphs.py`` serves takes the thread's lock there and holds
it until the run ends: whichever server serves it (``langgraph dev``, Aegra) and whatever
checkpointer it gives the graph. The lock is taken in the database $FANOUT_DB names, which must be
the one that holds the server's threads, as for ``fanout``.

A run that finds its thread busy waits for it, up to $FANOUT_LOCK_WAIT seconds (default 60),
then fails with a clear error. Waiting, not refusing: the server itself queues a second run on
a busy thread (its default multitask strategy), and a replica that picks up a run whose lease
ran out while its first worker still runs it must not run it beside that worker, nor fail a
run that is about to finish.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from graphs.checked import CheckedGraph
from langgraph_fanout.persistence.checkpointer import db_url, is_postgres, redact
from langgraph_fanout.persistence.thread_lock import thread_lock
from state.context import ConfigurationError

LOCK_WAIT_VARIABLE = "FANOUT_LOCK_WAIT"
DEFAULT_LOCK_WAIT = 60.0
"""Seconds a run waits for its thread when another process runs it."""


class OneWriterGraph(CheckedGraph):
    """A graph whose runs on a thread hold the thread's lock (``fanout``'s) while they run."""

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """``Pregel.astream`` holding the thread's lock; a run that saves nothing takes none.

        Raises:
            InvalidInputError: the input is invalid (found before waiting for the thread).
            ThreadBusyError: another process still ran the thread after the wait.
            ConfigurationError: $FANOUT_DB or $FANOUT_LOCK_WAIT cannot be right.
        """
        thread_id = (config or {}).get("configurable", {}).get("thread_id")
        run = cast(AsyncGenerator[Any, None], super().astream(input, config, **kwargs))
        if thread_id is None or not isinstance(self.checkpointer, BaseCheckpointSaver):
            async with aclosing(run):
                async for part in run:
                    yield part
            return
        self.check_input(input)
        url = lock_database(self.checkpointer)
        async with thread_lock(url, str(thread_id), wait=lock_wait()), aclosing(run):
            async for part in run:
                yield part


def lock_database(checkpointer: BaseCheckpointSaver) -> str:
    """The database of the thread locks: $FANOUT_DB, which must hold the server's threads.

    Raises:
        ConfigurationError: the server keeps threads in PostgreSQL (where replicas on other
            machines share them) and $FANOUT_DB names a SQLite file, whose lock only this
            machine sees. (``langgraph dev`` wraps its checkpointer,
            ``langgraph_fanout/server/checkpointer.py``, which opens $FANOUT_DB itself.)
    """
    url = db_url()
    if isinstance(checkpointer, AsyncPostgresSaver) and not is_postgres(url):
        raise ConfigurationError(
            f"the server keeps its threads in PostgreSQL, but $FANOUT_DB names {redact(url)}: "
            "set FANOUT_DB to the URL of the server's database, where runs lock their thread"
        )
    return url


def lock_wait() -> float:
    """Seconds a run waits for a busy thread: $FANOUT_LOCK_WAIT, else 60.

    Raises:
        ConfigurationError: it is not a number of seconds >= 0.
    """
    text = os.environ.get(LOCK_WAIT_VARIABLE, "")
    if not text:
        return DEFAULT_LOCK_WAIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigurationError(
            f"{LOCK_WAIT_VARIABLE} must be a number of seconds >= 0, got {text!r}"
        )
    return seconds
