"""The finished tasks of Temporal worker batches, saved as each one finishes.

A batch (``langgraph_fanout/temporal/batches.py``) also records its finished tasks in its
heartbeats, but Temporal's SDK sends a heartbeat at most every 2 s: a worker that died in
between lost the tasks that had finished since, and the batch's next attempt ran them again.
Each finished task is saved here first, in the checkpoint database (``--db`` /
``$FANOUT_DB``, which every worker of a deployment shares), under its batch (the workflow run
and the activity) and its place in the batch.

A row is kept for :data:`KEEP_FOR`: a batch cannot delete its rows when it returns, since the
worker may die before Temporal has its result, and the retry would then run every task
again. Each write deletes the rows older than that; a batch retried later than that (no
worker for an hour) reuses what its heartbeats recorded.

Tasks that finish together are saved in one transaction (:class:`TaskResults`); on SQLite
through one connection per process, in WAL mode with ``synchronous=NORMAL`` as the
checkpointer's: a commit survives a killed process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from langgraph_fanout.persistence.urls import (
    DatabaseError,
    database_errors,
    db_url,
    is_postgres,
    redact,
    scrub,
    sqlite_file,
)

T = TypeVar("T")

TABLE = "fanout_temporal_task_results"
KEEP_FOR = 3600.0
"""Seconds a saved task is kept."""
CONNECT_TIMEOUT = 5
"""Seconds a PostgreSQL connection may take (a host that does not answer)."""
Row = tuple[str, int, bytes, float]
"""A row: the batch (workflow run id and activity id), the task's index in it, its result,
when it was saved (Unix time)."""


class TaskResults:
    """The task results table of the database ``url`` names (``--db``; see ``urls.db_url``).

    One per database and event loop (:meth:`of`): the tasks of every batch of the process
    that finish while a write is under way are written together by the next one.
    """

    def __init__(self, url: str | None = None, keep_for: float = KEEP_FOR) -> None:
        url = db_url(url)
        self.url = url if is_postgres(url) else str(sqlite_file(url).resolve())
        self.keep_for = keep_for
        self._waiting: list[tuple[Row, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._sqlite: sqlite3.Connection | None = None
        self._created = False  # the PostgreSQL table (SQLite's: as it connects)
        self._lock = asyncio.Lock()  # SQLite: one statement at a time on the connection

    @classmethod
    def of(cls, url: str | None) -> TaskResults:
        """The running event loop's table of database ``url``."""
        tables = _by_loop.setdefault(asyncio.get_running_loop(), {})
        if (table := tables.get(url)) is None:
            table = tables[url] = cls(url)
        return table

    async def save(self, batch: str, task: int, data: bytes) -> None:
        """Save a finished task's result; return once it is committed.

        Raises:
            DatabaseError: the database cannot be written.
        """
        saved = asyncio.get_running_loop().create_future()
        self._waiting.append(((batch, task, data, time.time()), saved))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        await saved

    async def read(self, batch: str) -> dict[int, bytes]:
        """The saved results of ``batch``'s tasks, by index.

        Raises:
            DatabaseError: the database cannot be read.
        """
        with database_errors("read finished tasks from", self.url):
            if is_postgres(self.url):
                return await self._on_postgres(_pg_read, batch)
            return await self._on_sqlite(_sqlite_read, batch)

    async def _write_waiting(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            rows = [row for row, _ in waiting]
            expired = time.time() - self.keep_for
            try:
                with database_errors("save finished tasks in", self.url):
                    if is_postgres(self.url):
                        await self._on_postgres(_pg_write, (rows, expired))
                    else:
                        await self._on_sqlite(_sqlite_write, (rows, expired))
            except BaseException as exc:  # every waiter hears of it, whatever it is
                error = (
                    exc
                    if isinstance(exc, DatabaseError)
                    else DatabaseError(
                        f"cannot save finished tasks in {redact(self.url)}: "
                        f"{scrub(repr(exc), self.url)}"
                    )
                )
                for _, saved in waiting:
                    if not saved.done():
                        saved.set_exception(error)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the loop is closing
            else:
                for _, saved in waiting:
                    if not saved.done():
                        saved.set_result(None)
        self._writer = None  # a finished task refers to the loop, which keys this table

    async def _on_sqlite(self, operation: Callable[[sqlite3.Connection, Any], T], arg: Any) -> T:
        """``operation(connection, arg)`` in a thread, on the table's connection.

        Shielded: a caller cancelled meanwhile leaves the lock held until the thread is done
        with the connection.
        """

        async def locked() -> T:
            async with self._lock:
                if self._sqlite is None:
                    self._sqlite = await asyncio.to_thread(_sqlite_connect, self.url)
                return await asyncio.to_thread(operation, self._sqlite, arg)

        return await asyncio.shield(locked())

    async def _on_postgres(self, operation: Callable[[Any, Any], Awaitable[T]], arg: Any) -> T:
        """``operation(connection, arg)`` on a new connection, the table created once first."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            self.url, connect_timeout=CONNECT_TIMEOUT
        ) as connection:
            async with self._lock:
                if not self._created:
                    await connection.set_autocommit(True)
                    for statement in PG_CREATE:
                        await connection.execute(statement)
                    await connection.set_autocommit(False)
                    self._created = True
            return await operation(connection, arg)


_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, TaskResults]] = (
    WeakKeyDictionary()
)


# --- SQLite ----------------------------------------------------------------------------------

SQLITE_CREATE = (
    f"create table if not exists {TABLE} (batch text not null, task integer not null, "
    "data blob not null, saved_at real not null, primary key (batch, task))",
    f"create index if not exists {TABLE}_saved_at on {TABLE} (saved_at)",
)


def _sqlite_connect(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    with connection:
        for statement in SQLITE_CREATE:
            connection.execute(statement)
    return connection


def _sqlite_write(connection: sqlite3.Connection, rows_expired: tuple[list[Row], float]) -> None:
    rows, expired = rows_expired
    with connection:
        connection.execute(f"delete from {TABLE} where saved_at < ?", (expired,))
        connection.executemany(f"insert or replace into {TABLE} values (?, ?, ?, ?)", rows)


def _sqlite_read(connection: sqlite3.Connection, batch: str) -> dict[int, bytes]:
    found = connection.execute(f"select task, data from {TABLE} where batch = ?", (batch,))
    return dict(found.fetchall())


# --- PostgreSQL ------------------------------------------------------------------------------

PG_CREATE = (
    f"create table if not exists {TABLE} (batch text not null, task integer not null, "
    "data bytea not null, saved_at double precision not null, primary key (batch, task))",
    f"create index if not exists {TABLE}_saved_at on {TABLE} (saved_at)",
)


async def _pg_write(connection: Any, rows_expired: tuple[list[Row], float]) -> None:
    rows, expired = rows_expired
    await connection.execute(f"delete from {TABLE} where saved_at < %s", (expired,))
    async with connection.cursor() as cursor:
        await cursor.executemany(
            f"insert into {TABLE} values (%s, %s, %s, %s) on conflict (batch, task) "
            "do update set data = excluded.data, saved_at = excluded.saved_at",
            rows,
        )
    await connection.commit()


async def _pg_read(connection: Any, batch: str) -> dict[int, bytes]:
    cursor = await connection.execute(f"select task, data from {TABLE} where batch = %s", (batch,))
    return {task: bytes(data) for task, data in await cursor.fetchall()}
