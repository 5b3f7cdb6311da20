"""One writer per thread: a lock that a run holds while it runs, and that dies with its holder.

PostgreSQL: a session-level advisory lock, on a connection of its own; the server drops it
when that connection dies, whichever machine the holder ran on. SQLite: an OS file lock
(``flock``, through filelock) on a file next to the database, one per thread and removed on
release; the kernel drops it when the holder's process dies. Either way a ``kill -9`` leaves
no stale lock behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from persistence.checkpointer import (
    DatabaseError,
    db_url,
    is_postgres,
    redact,
    scrub,
    sqlite_file,
)

NAMESPACE = "langgraph-fanout thread "
"""Prefix of every advisory-lock key, so other applications' locks never collide with ours."""


class ThreadBusyError(Exception):
    """Another live process is running this thread."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(
            f"thread {thread_id!r} is running elsewhere (another process holds its lock); "
            "wait for it to finish or stop it, then resume"
        )
        self.thread_id = thread_id


@asynccontextmanager
async def thread_lock(url: str | None, thread_id: str) -> AsyncIterator[None]:
    """Hold ``thread_id``'s lock in database ``url`` for the block.

    Raises:
        ThreadBusyError: another process holds it (raised at once, never waits).
        DatabaseError: the lock cannot be taken for another reason.
    """
    url = db_url(url)
    if is_postgres(url):
        async with _advisory_lock(url, thread_id):
            yield
    else:
        with _file_lock(lock_file(url, thread_id), thread_id):
            yield


def lock_file(url: str, thread_id: str) -> Path:
    """The lock file of ``thread_id`` for the SQLite database ``url``."""
    database = sqlite_file(url)
    digest = hashlib.sha256(thread_id.encode()).hexdigest()[:32]
    return database.with_name(f"{database.name}.locks") / f"{digest}.lock"


@asynccontextmanager
async def _advisory_lock(url: str, thread_id: str) -> AsyncIterator[None]:
    import psycopg

    key = NAMESPACE + thread_id
    try:
        connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot open {redact(url)}: {scrub(str(exc), url)}") from None
    async with connection:
        cursor = await connection.execute(
            "select pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
        )
        row = await cursor.fetchone()
        if not (row and row[0]):
            raise ThreadBusyError(thread_id)
        try:
            yield
        finally:
            await connection.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


@contextmanager
def _file_lock(path: Path, thread_id: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    # A kernel lock only: a lock file left by a killed process must never count as held.
    lock = FileLock(path, blocking=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise ThreadBusyError(thread_id) from None
    try:
        yield
    finally:
        lock.release()
