"""While a run is in flight, a full garbage collection waits longer; young ones do not.

At a fan-out of 1,000, CPython's default thresholds started about 4 full collections a run,
each scanning every object of the process and freeing nothing (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import pytest

from graphs.article import graph
from langgraph_fanout.garbage_collection import (
    DEFAULT_THRESHOLDS,
    WHILE_RUNNING,
    fewer_full_collections,
)
from state.context import Context
from tests.fake_llm import FakeLLM


class Collections:
    """The collections of the process, by generation, and the thresholds they saw."""

    def __init__(self) -> None:
        self.by_generation = [0, 0, 0]
        self.thresholds: Counter[tuple[int, int, int]] = Counter()

    def reset(self) -> None:
        """Count from zero."""
        self.by_generation = [0, 0, 0]
        self.thresholds.clear()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.by_generation[info["generation"]] += 1
            self.thresholds[gc.get_threshold()] += 1


@pytest.fixture
def collections() -> Iterator[Collections]:
    """Counts the collections from here on, with CPython's default thresholds set."""
    before = gc.get_threshold()
    gc.set_threshold(*DEFAULT_THRESHOLDS)
    counted = Collections()
    gc.callbacks.append(counted)
    yield counted
    gc.callbacks.remove(counted)
    gc.set_threshold(*before)


async def test_a_run_of_1000_workers_makes_young_collections_and_at_most_one_full(
    fake_llm: FakeLLM, collections: Collections
) -> None:
    fake_llm.configure(default_items=1000)
    await graph.ainvoke({"topic": "tides"}, context=Context(max_sections=1))  # warm-up
    gc.collect()
    collections.reset()

    out = await graph.ainvoke({"topic": "tides"}, context=Context(max_sections=1000))

    assert len(out["completed_sections"]) == 1000
    young, middle, full = collections.by_generation
    assert young > 100 and middle > 10  # the cycles a run makes are freed as it goes
    assert full <= 1  # CPython's defaults: 3-4 a run
    assert collections.thresholds[WHILE_RUNNING] > 0.9 * sum(collections.thresholds.values())
    assert gc.get_threshold() == DEFAULT_THRESHOLDS


async def test_thresholds_the_process_set_itself_are_kept(
    fake_llm: FakeLLM, collections: Collections
) -> None:
    fake_llm.configure(default_items=200)
    own = (500, 5, 5)
    gc.set_threshold(*own)
    collections.reset()  # those seen before it was set

    await graph.ainvoke({"topic": "tides"}, context=Context(max_sections=200))

    assert collections.by_generation[0] > 0
    assert set(collections.thresholds) == {own}
    assert gc.get_threshold() == own


async def test_the_defaults_come_back_once_the_last_of_overlapping_runs_ends(
    fake_llm: FakeLLM, collections: Collections
) -> None:
    fake_llm.configure(default_items=3)
    first_done = asyncio.Event()
    seen_after_first: list[tuple[int, int, int]] = []

    async def first() -> None:
        await graph.ainvoke({"topic": "tides"}, context=Context(max_sections=3))
        first_done.set()

    async def second() -> None:
        async with aclosing(graph.astream({"topic": "ebb"}, context=Context())) as parts:
            async for _ in parts:
                if first_done.is_set() and not seen_after_first:
                    seen_after_first.append(gc.get_threshold())
                await first_done.wait()

    async with asyncio.timeout(60):  # second() would wait for ever if first() failed
        await asyncio.gather(first(), second())

    assert seen_after_first == [WHILE_RUNNING]
    assert gc.get_threshold() == DEFAULT_THRESHOLDS


async def test_a_stream_closed_early_puts_the_defaults_back(
    fake_llm: FakeLLM, collections: Collections
) -> None:
    fake_llm.configure(default_items=3)
    async with aclosing(graph.astream({"topic": "tides"}, context=Context())) as parts:
        async for _ in parts:
            assert gc.get_threshold() == WHILE_RUNNING
            break
    assert gc.get_threshold() == DEFAULT_THRESHOLDS

    for _ in graph.stream({"topic": "tides"}, context=Context()):
        assert gc.get_threshold() == WHILE_RUNNING
        break  # the generator is closed as the loop drops it
    assert gc.get_threshold() == DEFAULT_THRESHOLDS


def test_runs_on_threads_share_the_raised_thresholds(collections: Collections) -> None:
    inside = threading.Barrier(3)
    leave = threading.Event()

    def run() -> None:
        with fewer_full_collections():
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()
    assert gc.get_threshold() == WHILE_RUNNING
    leave.set()
    for thread in threads:
        thread.join()
    assert gc.get_threshold() == DEFAULT_THRESHOLDS


def test_thresholds_changed_during_a_run_are_not_undone(collections: Collections) -> None:
    with fewer_full_collections():
        gc.set_threshold(2000, 10, 10)
    assert gc.get_threshold() == (2000, 10, 10)
