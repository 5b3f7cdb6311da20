"""Batched task writes on SQLite: the library saver's rows, fewer transactions, errors apart."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from persistence.batched_writes import BatchedWritesSqliteSaver
from persistence.checkpointer import aopen_checkpointer


def _config(checkpoint_id: str) -> Any:
    return {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}


@asynccontextmanager
async def _saver(kind: type[AsyncSqliteSaver], path: Path) -> AsyncIterator[Any]:
    """``kind`` on a new SQLite file, set up, one checkpoint saved, the commits it runs counted."""
    async with kind.from_conn_string(str(path)) as saver:
        await saver.setup()
        await saver.aput(_config(""), {**empty_checkpoint(), "id": "c1"}, {}, {})
        saver.commits = 0

        def count(statement: str) -> None:
            saver.commits += statement == "COMMIT"

        await saver.conn.set_trace_callback(count)
        yield saver


def _rows(path: Path) -> list[tuple[Any, ...]]:
    """Every stored write, read on a connection of its own (so: only what is committed)."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM writes ORDER BY task_id, idx").fetchall()


# One checkpoint's writes as LangGraph makes them: regular channels are inserted once, a call
# writing only special channels (errors, interrupts) replaces what the task wrote there before.
CALLS: list[tuple[list[tuple[str, Any]], str, str]] = [
    ([("completed_sections", [{"name": "Tides", "content": "Twice a day."}])], "w1", "~0"),
    ([("__error__", "first failure")], "w2", "~1"),
    ([("__error__", "second failure")], "w2", "~1"),
    ([("sections", ["a"]), ("__interrupt__", "review")], "w3", ""),
    ([("sections", ["b"]), ("__interrupt__", "again")], "w3", ""),
    ([("__interrupt__", "resumed")], "w3", ""),
    *[
        ([("completed_sections", [{"name": f"s{i}", "content": "x" * i}])], f"s{i}", "")
        for i in range(40)
    ],
]


async def test_both_savers_store_the_same_rows(tmp_path: Path) -> None:
    stored = []
    for kind in (AsyncSqliteSaver, BatchedWritesSqliteSaver):
        path = tmp_path / f"{kind.__name__}.sqlite"
        async with _saver(kind, path) as saver:
            await asyncio.gather(
                *(saver.aput_writes(_config("c1"), w, task, pth) for w, task, pth in CALLS)
            )
        stored.append(_rows(path))

    library, batched = stored
    assert len(library) == 44
    assert batched == library
    assert [r[-1] for r in library if r[3] == "w2"] == [b"\xaesecond failure"]


async def test_writes_finishing_together_share_one_transaction(tmp_path: Path) -> None:
    commits = {}
    for kind in (AsyncSqliteSaver, BatchedWritesSqliteSaver):
        path = tmp_path / f"{kind.__name__}.sqlite"
        async with _saver(kind, path) as saver:
            await saver.aput_writes(_config("c1"), [("completed_sections", ["plan"])], "p")
            await asyncio.gather(
                *(
                    saver.aput_writes(_config("c1"), [("completed_sections", [i])], f"s{i:03}")
                    for i in range(100)
                )
            )
            assert len(_rows(path)) == 101  # committed before the calls returned
            commits[kind] = saver.commits

    assert commits == {AsyncSqliteSaver: 101, BatchedWritesSqliteSaver: 2}


async def test_a_bad_write_fails_only_its_own_call(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    async with _saver(BatchedWritesSqliteSaver, path) as saver:
        await saver.conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON writes WHEN NEW.channel = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
        await saver.conn.commit()
        tasks = ["s0", "s1", "poison", "s3", "s4"]

        results = await asyncio.gather(
            *(
                saver.aput_writes(_config("c1"), [("completed_sections", [t]), (t, 1)], t)
                for t in tasks
            ),
            return_exceptions=True,
        )

        errors = {t: str(r) for t, r in zip(tasks, results, strict=True) if r is not None}
        assert errors == {"poison": "refused by a trigger"}
        assert isinstance(results[2], sqlite3.IntegrityError)
        # none of the refused call's rows, not even the one before the refused one
        assert [row[3] for row in _rows(path)] == ["s0", "s0", "s1", "s1", "s3", "s3", "s4", "s4"]
        assert not saver.conn.in_transaction
        await saver.aput_writes(_config("c1"), [("completed_sections", ["later"])], "s5")
        assert len(_rows(path)) == 9


async def test_a_write_after_the_connection_closed_raises_as_the_library_saver_does(
    tmp_path: Path,
) -> None:
    errors = []
    for kind in (AsyncSqliteSaver, BatchedWritesSqliteSaver):
        async with _saver(kind, tmp_path / f"{kind.__name__}.sqlite") as saver:
            pass
        try:
            async with asyncio.timeout(10):
                await saver.aput_writes(_config("c1"), [("completed_sections", ["late"])], "s0")
        except ValueError as error:
            errors.append(str(error))

    assert errors == ["no active connection"] * 2


async def test_a_cancelled_flush_cancels_the_calls_waiting_for_it(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    async with _saver(BatchedWritesSqliteSaver, path) as saver:
        calls = [
            asyncio.create_task(
                saver.aput_writes(_config("c1"), [("completed_sections", [i])], f"s{i}")
            )
            for i in range(5)
        ]
        while saver.flusher is None or saver.queued:  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0)
        # the flush took the calls' rows and waits for aiosqlite's thread

        saver.flusher.cancel()
        async with asyncio.timeout(10):
            results = await asyncio.gather(*calls, return_exceptions=True)

        assert all(isinstance(r, asyncio.CancelledError) for r in results), results
        await saver.aput_writes(_config("c1"), [("completed_sections", ["later"])], "s9")
        assert "s9" in [row[3] for row in _rows(path)]


async def test_the_projects_sqlite_saver_batches_writes(tmp_path: Path) -> None:
    async with aopen_checkpointer(str(tmp_path / "db.sqlite")) as saver:
        assert isinstance(saver, BatchedWritesSqliteSaver)
    async with aopen_checkpointer(str(tmp_path / "db.sqlite"), defer_thread_deletes=True) as saver:
        assert isinstance(saver, BatchedWritesSqliteSaver)
