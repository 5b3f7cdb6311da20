"""Finished tasks of Temporal batches, saved in the checkpoint database (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from langgraph_fanout.persistence.task_results import TaskResults
from langgraph_fanout.persistence.urls import DatabaseError


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file of the test, or the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "checkpoints.sqlite")
    return str(request.getfixturevalue("postgres_url"))


async def test_tasks_saved_at_once_are_all_read_back_by_their_batch(database: str) -> None:
    one, other, none = (f"{uuid.uuid4()}/7" for _ in range(3))
    table = TaskResults(database)
    await asyncio.gather(*(table.save(one, i, b"task %d" % i) for i in range(50)))
    await table.save(other, 0, b"another batch")

    assert await table.read(one) == {i: b"task %d" % i for i in range(50)}
    assert await TaskResults(database).read(other) == {0: b"another batch"}  # committed
    assert await table.read(none) == {}


async def test_a_write_deletes_rows_kept_longer_than_keep_for(database: str) -> None:
    old, new = (f"{uuid.uuid4()}/1" for _ in range(2))
    table = TaskResults(database, keep_for=0.5)
    await table.save(old, 0, b"old")
    await asyncio.sleep(0.6)
    await table.save(new, 0, b"new")

    assert await table.read(old) == {}
    assert await table.read(new) == {0: b"new"}


async def test_a_database_that_cannot_be_written_is_a_database_error(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    table = TaskResults(str(blocked / "checkpoints.sqlite"))

    with pytest.raises(DatabaseError, match="cannot save finished tasks in .*not-a-folder"):
        await table.save("run/1", 0, b"lost")
