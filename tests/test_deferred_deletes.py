"""Deferred thread deletes: return at once, and never touch what a thread holds afterwards."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.persistence.deferred_deletes import DeferredThreadDeletes


class DeferredInMemorySaver(DeferredThreadDeletes, InMemorySaver):
    """The mixin over the library's in-memory saver, whose calls never yield on their own."""


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


async def _put(saver: Any, thread_id: str, marker: str) -> None:
    checkpoint = empty_checkpoint()
    await saver.aput(_config(thread_id), checkpoint, {"source": "input", "marker": marker}, {})


async def _markers(saver: Any, thread_id: str) -> list[str]:
    return [c.metadata["marker"] async for c in saver.alist(_config(thread_id))]


async def test_a_thread_written_right_after_its_delete_keeps_the_new_checkpoint() -> None:
    saver = DeferredInMemorySaver()
    await _put(saver, "t", "old")

    await saver.adelete_thread("t")  # returns before anything is deleted
    await _put(saver, "t", "new")  # the same thread id, created again at once
    await saver.settled("t")

    assert await _markers(saver, "t") == ["new"]


async def test_a_read_right_after_a_delete_does_not_see_the_old_thread() -> None:
    saver = DeferredInMemorySaver()
    await _put(saver, "t", "old")

    await saver.adelete_thread("t")

    assert await saver.aget_tuple(_config("t")) is None
    assert await _markers(saver, "t") == []


async def test_delete_returns_without_yielding_to_the_event_loop() -> None:
    saver = DeferredInMemorySaver()
    await _put(saver, "t", "old")
    steps: list[str] = []

    async def other() -> None:
        steps.append("other task ran")

    task = asyncio.create_task(other())
    await saver.adelete_thread("t")
    steps.append("delete returned")
    await task

    assert steps == ["delete returned", "other task ran"]


async def test_other_threads_are_untouched_and_deletes_of_one_thread_stay_in_order() -> None:
    saver = DeferredInMemorySaver()
    for thread in ("a", "b"):
        await _put(saver, thread, thread)

    await saver.adelete_thread("a")
    await saver.adelete_thread("a")
    await _put(saver, "a", "a2")
    await saver.settled(None)

    assert await _markers(saver, "a") == ["a2"]
    assert await _markers(saver, "b") == ["b"]
    assert saver.deleting == {}


async def test_a_failed_background_delete_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(DeferredThreadDeletes, InMemorySaver):
        async def _delete(self, thread_id: str, earlier: Any) -> None:
            raise OSError("disk gone")

    saver = Failing()
    with caplog.at_level(logging.ERROR):
        await saver.adelete_thread("t")
        await saver.settled("t")

    assert "deleting thread t's checkpoints failed" in caplog.text


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_servers_savers_delete_and_recreate_a_thread(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        str(tmp_path / "c.sqlite")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    async with aopen_checkpointer(url, defer_thread_deletes=True) as saver:
        assert isinstance(saver, DeferredThreadDeletes)
        await _put(saver, "t", "old")
        await saver.adelete_thread("t")
        await _put(saver, "t", "new")
        await saver.settled("t")

        assert await _markers(saver, "t") == ["new"]
