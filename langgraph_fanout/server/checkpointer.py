"""The checkpointer of the LangGraph server, named in ``langgraph.json``.

The server opens it at start-up
(``"checkpointer": {"path": "./langgraph_fanout/server/checkpointer.py:..."}``) in place of its own
store, so thread state lives in the database the CLI uses: the SQLite file or PostgreSQL URL in
$FANOUT_DB (default ``.fanout/checkpoints.sqlite``, relative to the server's working directory).
Every step and every finished worker is written at once, so a thread's state survives a hard kill
of the server. The graphs in ``graphs/`` stay compiled without a checkpointer: the server refuses
graphs that bring their own.

``langgraph dev`` is one process (``LANGGRAPH_RUNTIME_EDITION=inmem``), where any database
does. The Agent Server that ``langgraph build`` images and LangGraph Platform run sets another
edition (``postgres``) and may run several replicas, each in a container of its own: there a
SQLite file would give every replica threads of its own, so only a PostgreSQL URL is taken.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import NoReturn

from langgraph.checkpoint.base import BaseCheckpointSaver

from langgraph_fanout.environment import environment
from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.persistence.deferred_deletes import DeferredThreadDeletes
from langgraph_fanout.persistence.urls import DatabaseError, db_url, is_postgres

SINGLE_PROCESS_EDITION = "inmem"
"""The runtime edition of ``langgraph dev`` (also what an unset LANGGRAPH_RUNTIME_EDITION means)."""


def server_db_url() -> str:
    """$FANOUT_DB (:func:`~langgraph_fanout.persistence.urls.db_url`), if it can be shared.

    Raises:
        DatabaseError: the server may run as several replicas and the database is SQLite.
    """
    url = db_url()
    edition = os.environ.get("LANGGRAPH_RUNTIME_EDITION") or SINGLE_PROCESS_EDITION
    if edition != SINGLE_PROCESS_EDITION and not is_postgres(url):
        chosen = (
            "names a SQLite file" if environment("FANOUT_DB").fanout_db else "is unset (SQLite)"
        )
        raise DatabaseError(
            f"LANGGRAPH_RUNTIME_EDITION={edition} (the Agent Server, possibly several replicas) "
            f"and FANOUT_DB {chosen}: a file inside one container is not shared by the replicas. "
            "Set FANOUT_DB to a postgresql:// URL that every replica reaches."
        )
    return url


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """What ``langgraph.json`` names: :func:`server_checkpointer`.

    When the database cannot be used, the server stops at once with one line saying why
    (:func:`stop_server`).
    """
    async with AsyncExitStack() as stack:
        try:
            saver = await stack.enter_async_context(server_checkpointer())
        except DatabaseError as exc:
            stop_server(f"error: {exc}")
        yield saver


@asynccontextmanager
async def server_checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """The saver for :func:`server_db_url`, open for the server's lifetime (tables made if missing).

    Thread deletes are deferred (``langgraph_fanout/persistence/deferred_deletes.py``); the ones
    still running at shutdown are finished before the database closes.

    Raises:
        DatabaseError: the database cannot be used.
    """
    async with aopen_checkpointer(server_db_url(), defer_thread_deletes=True) as saver:
        try:
            yield saver
        finally:
            if isinstance(saver, DeferredThreadDeletes):
                await saver.settled(None)


def stop_server(message: str) -> NoReturn:
    """Print ``message`` and end the server (exit 2), its auto-reloader too.

    The server calls the checkpointer in its start-up, which logs any exception with a long
    traceback and then waits, not serving: so this exits at once. Under ``langgraph dev``'s
    reloader (a process of its own that never learns its server died) it asks that process to
    stop too; the reloader then exits as after a Ctrl-C, with status 0.
    """
    print(message, file=sys.stderr, flush=True)
    reloader = multiprocessing.parent_process()
    if reloader is not None and reloader.pid is not None:
        os.kill(reloader.pid, signal.SIGTERM)
    os._exit(2)
