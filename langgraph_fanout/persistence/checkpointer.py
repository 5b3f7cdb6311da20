"""Open a LangGraph checkpointer from a URL: a SQLite file (default) or PostgreSQL.

Which database, and its URL fit to print: :mod:`langgraph_fanout.persistence.urls`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, cast

from langgraph_fanout.persistence.urls import (
    DatabaseError,
    db_url,
    is_postgres,
    redact,
    scrub,
    sqlite_file,
)

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from langgraph_fanout.persistence.batched_writes import BatchedWrites

SQLITE_SYNC = "PRAGMA synchronous=NORMAL"
"""With the saver's WAL journal: every commit survives a killed process (not a power cut)."""


def _sqlite_path(url: str) -> str:
    """The SQLite file of ``url``, its folder made, checked to open.

    Opening it here first (stdlib sqlite3) keeps aiosqlite from failing to connect: when it
    does, its worker thread can outlive the event loop and print a traceback at exit
    (omnilib/aiosqlite#241).
    """
    path = sqlite_file(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(path).close()
    return str(path)


@contextmanager
def open_checkpointer(url: str | None = None) -> Iterator[BaseCheckpointSaver]:
    """A synchronous saver for ``url`` (see :func:`db_url`), its tables created if missing.

    Raises:
        DatabaseError: the database cannot be opened or set up.
    """
    url = db_url(url)
    with ExitStack() as stack:
        try:
            if is_postgres(url):
                import psycopg
                from langgraph.checkpoint.postgres import PostgresSaver

                from langgraph_fanout.persistence.batched_postgres import (
                    SETUP_LOCK,
                    SETUP_POLL_SECONDS,
                )

                saver: PostgresSaver | SqliteSaver
                saver = stack.enter_context(PostgresSaver.from_conn_string(url))
                with psycopg.connect(url, autocommit=True) as lock:  # one setup at a time
                    while not lock.execute(SETUP_LOCK).fetchone()[0]:  # type: ignore[index]
                        time.sleep(SETUP_POLL_SECONDS)
                    saver.setup()
            else:
                from langgraph.checkpoint.sqlite import SqliteSaver

                saver = stack.enter_context(SqliteSaver.from_conn_string(_sqlite_path(url)))
                saver.setup()
                saver.conn.execute(SQLITE_SYNC)
        except Exception as exc:
            raise DatabaseError(f"cannot open {redact(url)}: {scrub(str(exc), url)}") from None
        yield saver


@asynccontextmanager
async def aopen_checkpointer(
    url: str | None = None, *, defer_thread_deletes: bool = False
) -> AsyncIterator[BatchedWrites]:
    """The asynchronous form of :func:`open_checkpointer`.

    The writes of tasks that finish together are saved in one transaction
    (``langgraph_fanout/persistence/batched_writes.py``).

    ``defer_thread_deletes``: the saver the ``langgraph dev`` server needs
    (``langgraph_fanout/persistence/deferred_deletes.py`` says why).
    """
    url = db_url(url)
    async with AsyncExitStack() as stack:
        try:
            if is_postgres(url):
                from langgraph_fanout.persistence.batched_postgres import (
                    BatchedWritesPostgresSaver,
                    DeferredDeletePostgresSaver,
                )

                pg = (
                    DeferredDeletePostgresSaver
                    if defer_thread_deletes
                    else BatchedWritesPostgresSaver
                )
                saver: AsyncPostgresSaver | AsyncSqliteSaver
                saver = await stack.enter_async_context(pg.from_conn_string(url))
                await saver.setup()
            else:
                from langgraph_fanout.persistence.batched_sqlite import (
                    BatchedWritesSqliteSaver,
                    DeferredDeleteSqliteSaver,
                )

                sqlite = (
                    DeferredDeleteSqliteSaver if defer_thread_deletes else BatchedWritesSqliteSaver
                )
                path = _sqlite_path(url)
                saver = await stack.enter_async_context(sqlite.from_conn_string(path))
                await saver.setup()
                await saver.conn.execute(SQLITE_SYNC)
        except Exception as exc:
            raise DatabaseError(f"cannot open {redact(url)}: {scrub(str(exc), url)}") from None
        yield cast("BatchedWrites", saver)  # from_conn_string is typed as the library's class
