"""One writer per thread: a lock that a run holds while it runs, and that dies with its holder.

PostgreSQL: a session-level advisory lock, on a connection of its own; the server drops it
when that connection dies, whichever machine the holder ran on. Since a PostgreSQL restart or a
network cut drops it too while its holder lives, taking it also raises the thread's generation
(``fencing.py``): the holder's checkpoint writes check that generation in their own
transaction, and a keeper takes the lock again as soon as the database is back. A holder whose
thread another process took meanwhile is refused every write and learns it
(:attr:`HeldThread.lost`).

SQLite: an OS file lock (``flock``, through filelock) on a file next to the database, one per
thread; the kernel drops it when the holder's process dies, and only then: a frozen holder
keeps it, so no takeover and no fence are needed there.

Either way a ``kill -9`` leaves no stale lock behind. ``fanout`` refuses a busy thread at once;
the served graphs (``langgraph_fanout/server/one_writer.py``) wait for it a while, polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langgraph_fanout.persistence.urls import (
    DatabaseError,
    db_url,
    is_postgres,
    redact,
    scrub,
    sqlite_file,
)

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from psycopg import AsyncConnection

FENCE_KEY = "__fanout_fence"
"""The run-config key (``configurable``) of the generation a holder's writes must still find
(``fencing.py``); LangGraph keeps keys starting with ``__`` out of checkpoint metadata."""
NAMESPACE = "langgraph-fanout thread "
"""Prefix of every advisory-lock key, so other applications' locks never collide with ours."""
LOCK_KEY = "hashtextextended(%s, 0)"


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


class ThreadTakenOverError(RuntimeError):
    """Another process took the thread after this one lost its lock: its writes are refused."""

    def __init__(self, thread_id: str, holder: str, taken_at: datetime | None = None) -> None:
        when = f" at {taken_at:%Y-%m-%d %H:%M:%S %Z}" if taken_at else ""
        super().__init__(
            f"thread {thread_id!r} was taken over by {holder}{when} while this process had "
            "lost its database connection; this process stops without writing to it again "
            "(the thread's result is the other process's)"
        )
        self.thread_id = thread_id


POLL_SECONDS = 0.25
"""How often a waiting run tries the lock again."""


class HeldThread:
    """A thread this process holds.

    ``sure`` is set while the lock is known to be held (cleared from the moment its connection
    dies until the keeper has taken it again); ``lost`` is set if another process took the
    thread meanwhile.
    """

    def __init__(self) -> None:
        self.lost: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        self.sure = asyncio.Event()
        self.sure.set()
        self.generation: int | None = None  # on PostgreSQL, once taken

    def fenced(self, config: RunnableConfig) -> RunnableConfig:
        """``config`` for a run or update of the thread: its writes checked against takeovers."""
        if self.generation is None:
            return config
        configurable = {**config.get("configurable", {}), FENCE_KEY: self.generation}
        return {**config, "configurable": configurable}

    async def admit(self) -> None:
        """Return once the thread is surely still ours: an LLM call may start.

        Raises:
            ThreadTakenOverError: another process took the thread.
        """
        if not self.sure.is_set() and not self.lost.done():
            sure: asyncio.Future[object] = asyncio.ensure_future(self.sure.wait())
            lost = cast("asyncio.Future[object]", self.lost)
            try:
                await asyncio.wait([sure, lost], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sure.cancel()
        if self.lost.done():
            raise self.lost.result()


@asynccontextmanager
async def thread_lock(
    url: str | None, thread_id: str, *, wait: float = 0.0
) -> AsyncIterator[HeldThread]:
    """Hold ``thread_id``'s lock in database ``url`` for the block.

    ``wait``: seconds to wait for a busy thread (0: refuse it at once). Runs and updates of
    the thread pass their config through :meth:`HeldThread.fenced`: on PostgreSQL their
    writes are then refused once another process has taken the thread.

    Raises:
        ThreadBusyError: another process holds it (after ``wait`` seconds).
        DatabaseError: the lock cannot be taken for another reason.
    """
    url = db_url(url)
    lock: _Lock = _AdvisoryLock(url, thread_id) if is_postgres(url) else _FileLock(url, thread_id)
    try:
        deadline = time.monotonic() + wait
        while not await lock.try_take():
            if time.monotonic() >= deadline:
                raise ThreadBusyError(thread_id, wait)
            await asyncio.sleep(POLL_SECONDS)
        yield lock.held
    finally:
        await lock.release()


def lock_file(url: str, thread_id: str) -> Path:
    """The lock file of ``thread_id`` for the SQLite database ``url``."""
    database = sqlite_file(url)
    digest = hashlib.sha256(thread_id.encode()).hexdigest()[:32]
    return database.with_name(f"{database.name}.locks") / f"{digest}.lock"


class _Lock:
    """What :func:`thread_lock` needs of a lock."""

    def __init__(self) -> None:
        self.held = HeldThread()

    async def try_take(self) -> bool:
        """Take the lock if it is free; whether it was."""
        raise NotImplementedError

    async def release(self) -> None:
        """Let the lock go (if taken); never raises for a connection already gone."""


class _FileLock(_Lock):
    """The OS lock of the thread's lock file.

    Taken and released on a worker thread: file system calls would block the event loop
    (``langgraph dev`` fails a run that blocks it).
    """

    def __init__(self, url: str, thread_id: str) -> None:
        from filelock import FileLock

        super().__init__()
        self.path = lock_file(url, thread_id)
        # A kernel lock only: a lock file left by a killed process must never count as held.
        self.lock = FileLock(self.path, blocking=False, fallback_to_soft=False, thread_local=False)

    async def try_take(self) -> bool:
        from filelock import Timeout

        def take() -> bool:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.lock.acquire()
            except Timeout:
                return False
            return True

        return await asyncio.to_thread(take)

    async def release(self) -> None:
        if self.lock.is_locked:
            await asyncio.to_thread(self.lock.release)


class _AdvisoryLock(_Lock):
    """A session advisory lock on a connection of its own, kept through outages."""

    def __init__(self, url: str, thread_id: str) -> None:
        from langgraph_fanout.persistence.outages import outage_of

        super().__init__()
        self.url = url
        self.thread_id = thread_id
        self.key = NAMESPACE + thread_id
        self.outage = outage_of(url)
        self.conn: AsyncConnection[Any] | None = None
        self.keeper: asyncio.Task[None] | None = None

    async def connect(self) -> AsyncConnection[Any]:
        """The lock's connection, made anew if it died."""
        import psycopg

        if self.conn is None or self.conn.closed:
            # TCP keepalives: a peer gone without a word (a cut network) is noticed in ~10 s.
            self.conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                keepalives=1,
                keepalives_idle=4,
                keepalives_interval=2,
                keepalives_count=3,
            )
        return self.conn

    async def try_take(self) -> bool:
        import psycopg

        from langgraph_fanout.persistence.fencing import take
        from langgraph_fanout.persistence.outages import ride_out

        async def take_once() -> bool:
            conn = await self.connect()
            if not await self._try_lock(conn):
                return False
            self.held.generation = await take(conn, self.thread_id)
            return True

        if self.conn is None:  # a database that never answered fails at once
            try:
                await self.connect()
            except psycopg.Error as exc:
                message = f"cannot open {redact(self.url)}: {scrub(str(exc), self.url)}"
                raise DatabaseError(message) from None
        if not await ride_out(self.outage, take_once, self.connect):
            return False
        self.keeper = asyncio.get_running_loop().create_task(self.keep())
        return True

    async def _try_lock(self, conn: AsyncConnection[Any]) -> bool:
        cursor = await conn.execute(f"select pg_try_advisory_lock({LOCK_KEY})", (self.key,))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def keep(self) -> None:
        """Wait for the lock's connection to die; take the lock again, or learn who has."""
        import psycopg

        from langgraph_fanout.persistence.fencing import Holder, holder_of
        from langgraph_fanout.persistence.outages import ride_out

        async def retake() -> tuple[bool, Holder | None]:
            conn = await self.connect()
            locked = await self._try_lock(conn)
            return locked, await holder_of(conn, self.thread_id)

        while True:
            assert self.conn is not None
            try:
                async for _ in self.conn.notifies():  # returns only when the connection dies
                    pass
            except psycopg.OperationalError as exc:
                self.outage.lost(exc)
            self.held.sure.clear()  # no new LLM call until the thread is known to be ours
            locked, holder = await ride_out(self.outage, retake, self.connect)
            if locked and holder is not None and holder.generation == self.held.generation:
                self.held.sure.set()
                continue  # ours again: nobody took the thread meanwhile
            if locked:
                await self._unlock()
            if not self.held.lost.done():
                name = holder.holder if holder else "another process"
                error = ThreadTakenOverError(
                    self.thread_id, name, holder.taken_at if holder else None
                )
                self.held.lost.set_result(error)
            return

    async def _unlock(self) -> None:
        import psycopg

        if self.conn is not None and not self.conn.closed:
            with contextlib.suppress(psycopg.Error):  # a dead session holds no lock
                await self.conn.execute(f"select pg_advisory_unlock({LOCK_KEY})", (self.key,))

    async def release(self) -> None:
        import psycopg

        if self.keeper is None:  # never taken
            if self.conn is not None:
                await self.conn.close()
            return
        self.keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
            await self.keeper
        if not self.held.lost.done():
            await self._unlock()
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self.conn.close()
