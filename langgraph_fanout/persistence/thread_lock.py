"""One writer per thread: a lock that a run holds while it runs, and that dies with its holder.

PostgreSQL: a session-level advisory lock, on a connection of its own; the server drops it
when that connection dies, whichever machine the holder ran on. SQLite: an OS file lock
(``flock``, through filelock) on a file next to the database, one per thread and removed on
release; the kernel drops it when the holder's process dies. Either way a ``kill -9`` leaves
no stale lock behind.

``fanout`` refuses a busy thread at once; the served graphs
(``langgraph_fanout/server/one_writer.py``) wait for it a while, polling.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph_fanout.persistence.checkpointer import (
    DatabaseError,
    db_url,
    is_postgres,
    redact,
    scrub,
    sqlite_file,
)

NAMESPACE = "langgraph-fanout thread "
"""Prefix of every advisory-lock key, so other applications' locks never collide with ours."""


class ThreadBusyError(ValueError):
    """Another live process is running this thread.

    A ``ValueError``, so that the LangGraph API servers show its message to the client.
    """

    def __init__(self, thread_id: str, waited: float = 0.0) -> None:
        what = f"thread {thread_id!r} is running elsewhere (another process holds its lock)"
        if waited:
            super().__init__(
                f"{what}, still after {waited:g} s of waiting; try again once it has finished"
            )
        else:
            super().__init__(f"{what}; wait for it to finish or stop it, then resume")
        self.thread_id = thread_id


POLL_SECONDS = 0.25
"""How often a waiting run tries the lock again."""


@asynccontextmanager
async def thread_lock(url: str | None, thread_id: str, *, wait: float = 0.0) -> AsyncIterator[None]:
    """Hold ``thread_id``'s lock in database ``url`` for the block.

    ``wait``: seconds to wait for a busy thread (0: refuse it at once).

    Raises:
        ThreadBusyError: another process holds it (after ``wait`` seconds).
        DatabaseError: the lock cannot be taken for another reason.
    """
    url = db_url(url)
    lock = (
        _advisory_lock(url, thread_id)
        if is_postgres(url)
        else _file_lock(lock_file(url, thread_id))
    )
    async with lock as try_lock:
        deadline = time.monotonic() + wait
        while not await try_lock():
            if time.monotonic() >= deadline:
                raise ThreadBusyError(thread_id, wait)
            await asyncio.sleep(POLL_SECONDS)
        yield


def lock_file(url: str, thread_id: str) -> Path:
    """The lock file of ``thread_id`` for the SQLite database ``url``."""
    database = sqlite_file(url)
    digest = hashlib.sha256(thread_id.encode()).hexdigest()[:32]
    return database.with_name(f"{database.name}.locks") / f"{digest}.lock"


TryLock = Callable[[], Awaitable[bool]]
"""Take the lock if it is free; whether it was."""


@asynccontextmanager
async def _advisory_lock(url: str, thread_id: str) -> AsyncIterator[TryLock]:
    import psycopg

    key = NAMESPACE + thread_id
    try:
        connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot open {redact(url)}: {scrub(str(exc), url)}") from None
    taken = False

    async def try_lock() -> bool:
        nonlocal taken
        cursor = await connection.execute(
            "select pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
        )
        row = await cursor.fetchone()
        taken = bool(row and row[0])
        return taken

    async with connection:
        try:
            yield try_lock
        finally:
            if taken:
                await connection.execute(
                    "select pg_advisory_unlock(hashtextextended(%s, 0))", (key,)
                )


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[TryLock]:
    """The OS lock of the file at ``path``.

    Taken and released on a worker thread: file system calls would block the event loop
    (``langgraph dev`` fails a run that blocks it).
    """
    from filelock import FileLock, Timeout

    # A kernel lock only: a lock file left by a killed process must never count as held.
    lock = FileLock(path, blocking=False, fallback_to_soft=False, thread_local=False)

    def take() -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
        except Timeout:
            return False
        return True

    async def try_lock() -> bool:
        return await asyncio.to_thread(take)

    try:
        yield try_lock
    finally:
        if lock.is_locked:
            await asyncio.to_thread(lock.release)
