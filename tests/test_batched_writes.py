"""Batched task writes: the library savers' rows, fewer transactions, errors kept apart.

The tests run on SQLite and on PostgreSQL (one, on the mixin alone, on SQLite only), with the
project's saver and, where it compares, the library's; each looks at the database on a
connection of its own, so it sees only what is committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_fanout.persistence.batched_postgres import BatchedWritesPostgresSaver
from langgraph_fanout.persistence.batched_sqlite import BatchedWritesSqliteSaver
from langgraph_fanout.persistence.batched_writes import WritesNotSavedError
from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.persistence.urls import is_postgres


@dataclass
class Store:
    """A saver set up on a thread of its own, and that thread's database seen from outside."""

    saver: Any
    thread: str
    rows: Callable[[], list[tuple[Any, ...]]]
    """The thread's committed writes in key order, without the thread id."""
    transactions: Callable[[], int]
    """Write transactions committed on the database since the store was opened."""

    def config(self) -> Any:
        """The checkpoint every write of the test goes to."""
        return {
            "configurable": {"thread_id": self.thread, "checkpoint_ns": "", "checkpoint_id": "c1"}
        }

    async def put(self, task_id: str, *writes: tuple[str, Any], task_path: str = "") -> None:
        """One task's writes, as LangGraph saves them."""
        await self.saver.aput_writes(self.config(), list(writes), task_id, task_path)


OpenStore = Callable[[bool], AbstractAsyncContextManager[Store]]
"""Open a store with the library's saver (True) or the project's (False)."""


async def _started(saver: Any, thread: str) -> None:
    await saver.setup()
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    await saver.aput(config, {**empty_checkpoint(), "id": "c1"}, {}, {})


def _sqlite(path: str) -> OpenStore:
    @asynccontextmanager
    async def open_store(library: bool) -> AsyncIterator[Store]:
        kind = AsyncSqliteSaver if library else BatchedWritesSqliteSaver
        thread = str(uuid.uuid4())
        async with kind.from_conn_string(path) as saver:
            await _started(saver, thread)
            commits = 0

            def count(statement: str) -> None:
                nonlocal commits
                commits += statement == "COMMIT"

            await saver.conn.set_trace_callback(count)

            def rows() -> list[tuple[Any, ...]]:
                with sqlite3.connect(path) as conn:
                    query = "SELECT * FROM writes WHERE thread_id = ? ORDER BY task_id, idx"
                    return [row[1:] for row in conn.execute(query, (thread,))]

            yield Store(saver, thread, rows, lambda: commits)

    return open_store


def _postgres(url: str) -> OpenStore:
    def next_xid() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
            assert row is not None
            return int(row[0])

    @asynccontextmanager
    async def open_store(library: bool) -> AsyncIterator[Store]:
        kind = AsyncPostgresSaver if library else BatchedWritesPostgresSaver
        thread = str(uuid.uuid4())
        async with kind.from_conn_string(url) as saver:
            await _started(saver, thread)
            start = next_xid()

            def rows() -> list[tuple[Any, ...]]:
                with psycopg.connect(url) as conn:
                    query = (
                        "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, "
                        "type, blob FROM checkpoint_writes WHERE thread_id = %s "
                        "ORDER BY task_id, idx"
                    )
                    return conn.execute(query, (thread,)).fetchall()

            yield Store(saver, thread, rows, lambda: next_xid() - start)

    return open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file or a PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "checkpoints.sqlite")


@pytest.fixture
def open_store(database: str) -> OpenStore:
    """Open a store on ``database``."""
    return _postgres(database) if is_postgres(database) else _sqlite(database)


# One checkpoint's writes as LangGraph makes them: regular channels are inserted once, a call
# writing only special channels (errors, interrupts) replaces what the task wrote there before.
CALLS: list[tuple[str, list[tuple[str, Any]], str]] = [
    ("w1", [("completed_sections", [{"name": "Tides", "content": "Twice a day."}])], "~0"),
    ("w2", [("__error__", "first failure")], "~1"),
    ("w2", [("__error__", "second failure")], "~1"),
    ("w3", [("sections", ["a"]), ("__interrupt__", "review")], ""),
    ("w3", [("sections", ["b"]), ("__interrupt__", "again")], ""),
    ("w3", [("__interrupt__", "resumed")], ""),
    *[
        (f"s{i}", [("completed_sections", [{"name": f"s{i}", "content": "x" * i}])], "")
        for i in range(40)
    ],
]


async def test_both_savers_store_the_same_rows(open_store: OpenStore) -> None:
    async with open_store(True) as store:  # the library saver, one call after another
        for task, writes, path in CALLS:
            await store.put(task, *writes, task_path=path)
        library_rows = store.rows()
    async with open_store(False) as store:  # batched: the calls all at once
        await asyncio.gather(*(store.put(t, *w, task_path=p) for t, w, p in CALLS))
        batched_rows = store.rows()

    assert len(library_rows) == 44
    assert batched_rows == library_rows
    assert [row[-1] for row in library_rows if row[2] == "w2"] == [b"\xaesecond failure"]


async def test_writes_finishing_together_share_one_transaction(open_store: OpenStore) -> None:
    transactions = []
    for library in (True, False):
        async with open_store(library) as store:
            await store.put("plan", ("completed_sections", ["plan"]))
            await asyncio.gather(  # inserts, and every tenth call an upsert (an error)
                *(
                    store.put(f"s{i:03}", ("__error__", i) if i % 10 == 9 else ("sections", i))
                    for i in range(100)
                )
            )
            assert len(store.rows()) == 101  # committed before the calls returned
            transactions.append(store.transactions())

    assert transactions == [101, 2]


async def test_a_bad_write_fails_only_its_own_call(open_store: OpenStore) -> None:
    # "poison" is refused by the database, "surrogate" by the driver (it cannot encode the
    # channel's name): each after its call's first row was sent.
    async with open_store(False) as store, refusing_poison(store.saver):
        tasks = ["s0", "s1", "poison", "s3", "surrogate", "s5"]
        channel = {"surrogate": "\ud800"}

        results = await asyncio.gather(
            *(store.put(t, ("completed_sections", [t]), (channel.get(t, t), 1)) for t in tasks),
            return_exceptions=True,
        )

        errors = {t: r for t, r in zip(tasks, results, strict=True) if r is not None}
        assert sorted(errors) == ["poison", "surrogate"], errors
        assert str(errors["poison"]).splitlines()[0] == "refused by a trigger"
        assert isinstance(errors["surrogate"], UnicodeEncodeError)
        # none of a refused call's rows, not even the one before the refused one
        assert [row[2] for row in store.rows()] == ["s0", "s0", "s1", "s1", "s3", "s3", "s5", "s5"]
        await store.put("s6", ("completed_sections", ["later"]))
        assert len(store.rows()) == 9


@asynccontextmanager
async def refusing_poison(saver: Any) -> AsyncIterator[None]:
    """A trigger on the saver's database that refuses a write to the channel "poison"."""
    if isinstance(saver, AsyncSqliteSaver):
        await saver.conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON writes WHEN NEW.channel = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
        await saver.conn.commit()
        yield
        assert not saver.conn.in_transaction
        return
    async with saver.conn.cursor() as cur:
        await cur.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.channel = 'poison' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
            "RETURN NEW; END $$"
        )
        await cur.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON checkpoint_writes "
            "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
    try:
        yield
    finally:
        async with saver.conn.cursor() as cur:
            await cur.execute("DROP TRIGGER refuse ON checkpoint_writes")
            await cur.execute("DROP FUNCTION refuse_poison()")


async def test_a_write_after_the_connection_closed_raises_as_the_library_saver_does(
    open_store: OpenStore,
) -> None:
    errors = []
    for library in (True, False):
        async with open_store(library) as store:
            pass
        try:
            async with asyncio.timeout(10):
                await store.put("s0", ("completed_sections", ["late"]))
        except Exception as error:
            errors.append((type(error), str(error)))

    assert len(errors) == 2
    assert errors[0] == errors[1]


async def test_a_cancelled_flush_fails_its_calls_and_commits_none_of_them(
    open_store: OpenStore,
) -> None:
    async with open_store(False) as store:
        taken = [asyncio.create_task(store.put(f"s{i}", ("sections", i))) for i in range(5)]
        while store.saver.flusher is None or store.saver.queued:  # noqa: ASYNC110 (no event)
            await asyncio.sleep(0)
        # The flush took the first calls and waits for its first step: on SQLite their rows
        # are on their way to the database. Two more calls queue behind it.
        queued = [asyncio.create_task(store.put(f"s{i}", ("sections", i))) for i in (5, 6)]
        store.saver.flusher.cancel()
        async with asyncio.timeout(10):
            results = await asyncio.gather(*taken, *queued, return_exceptions=True)

        assert [type(r) for r in results] == [WritesNotSavedError] * 7, results
        await store.put("s9", ("sections", 9))
        assert [row[2] for row in store.rows()] == ["s9"]


class BrokenSaveSaver(BatchedWritesSqliteSaver):
    """A saver whose ``save`` raises instead of returning its error (a bug)."""

    async def save(self, batch: list[Any]) -> Exception | None:
        raise RuntimeError("a bug in save")


async def test_an_error_raised_by_save_fails_the_calls_instead_of_cancelling_them(
    tmp_path: Path,
) -> None:
    async with BrokenSaveSaver.from_conn_string(str(tmp_path / "broken.sqlite")) as saver:
        await _started(saver, "t")
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}}

        results = await asyncio.gather(
            *(saver.aput_writes(config, [("sections", i)], f"s{i}") for i in range(3)),
            return_exceptions=True,
        )

        assert [type(r) for r in results] == [WritesNotSavedError] * 3
        assert [repr(r.__cause__) for r in results] == ["RuntimeError('a bug in save')"] * 3
        assert saver.flusher is not None and saver.flusher.exception() is None
        assert saver.queued == []


@pytest.mark.parametrize("defer_thread_deletes", [False, True], ids=["cli", "server"])
async def test_the_projects_savers_batch_writes(database: str, defer_thread_deletes: bool) -> None:
    batched = BatchedWritesPostgresSaver if is_postgres(database) else BatchedWritesSqliteSaver
    async with aopen_checkpointer(database, defer_thread_deletes=defer_thread_deletes) as saver:
        assert isinstance(saver, batched)
