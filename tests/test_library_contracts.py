"""What the project assumes of library internals, checked: a library upgrade that changes them
fails here, before it corrupts a checkpoint.

``langgraph_fanout/persistence`` batches the writes of the checkpoint savers: on SQLite it
writes the rows ``AsyncSqliteSaver.aput_writes`` writes, with the same SQL; on PostgreSQL it
calls ``AsyncPostgresSaver``'s ``_cursor`` and ``_dump_writes`` (not public).
tests/test_batched_writes.py checks the rows themselves on both databases.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_fanout.persistence.batched_sqlite import SQLITE_INSERT, SQLITE_UPSERT

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("graphs", "nodes", "state", "langgraph_fanout", "benchmarks", "tests")


def test_the_sqlite_saver_writes_with_the_sql_the_batched_saver_copies() -> None:
    source = inspect.getsource(AsyncSqliteSaver.aput_writes)
    assert f'"{SQLITE_UPSERT}"' in source
    assert f'"{SQLITE_INSERT}"' in source


def test_the_postgres_saver_internals_the_batched_saver_calls_are_as_expected() -> None:
    cursor = inspect.signature(AsyncPostgresSaver._cursor)
    assert list(cursor.parameters) == ["self", "pipeline"]
    assert cursor.parameters["pipeline"].kind == inspect.Parameter.KEYWORD_ONLY
    dump = inspect.signature(AsyncPostgresSaver._dump_writes)
    assert list(dump.parameters) == [
        "self", "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "writes",
    ]  # fmt: skip
    for query in ("UPSERT_CHECKPOINT_WRITES_SQL", "INSERT_CHECKPOINT_WRITES_SQL"):
        assert "checkpoint_writes" in getattr(AsyncPostgresSaver, query)


def test_no_module_of_the_project_imports_a_private_module() -> None:
    private = re.compile(
        r"^\s*(from|import)\s+(?!__future__)([\w.]*\.)?_\w"  # a private module: a._b, _a
        r"|^\s*from\s+[\w.]+\s+import\s+\(?\s*_[a-z]",  # a private name: from a import _b
        re.MULTILINE,
    )
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if private.search(path.read_text())
    ]
    assert offenders == []


def test_a_checkpoint_is_written_through_the_cursor_the_fenced_saver_wraps() -> None:
    # persistence/fencing.py checks a checkpoint's fence in the transaction of that cursor.
    assert "self._cursor(pipeline=True)" in inspect.getsource(AsyncPostgresSaver.aput)


async def test_the_fence_key_reaches_every_write_and_stays_out_of_checkpoint_metadata() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.evaluation import builder
    from langgraph_fanout.persistence.thread_lock import FENCE_KEY

    seen: list[object] = []

    class Spy(InMemorySaver):
        async def aput(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
            seen.append(config["configurable"].get(FENCE_KEY))
            return await super().aput(config, checkpoint, metadata, new_versions)

        async def aput_writes(self, config, writes, task_id, task_path=""):  # type: ignore[no-untyped-def]
            seen.append(config["configurable"].get(FENCE_KEY))
            await super().aput_writes(config, writes, task_id, task_path)

    graph = builder.compile(checkpointer=Spy())
    config = {"configurable": {"thread_id": "t", FENCE_KEY: 7}}
    await graph.aupdate_state(config, {"text": "Tea."})
    assert seen and set(seen) == {7}
    saved = await graph.checkpointer.aget_tuple({"configurable": {"thread_id": "t"}})
    assert saved is not None and FENCE_KEY not in saved.metadata
    assert FENCE_KEY not in str(saved.metadata)


async def test_a_task_finds_its_steps_checkpoint_and_leaves_unknown_writes_alone() -> None:
    """The call journal (``langgraph_fanout/llm/spending.py``) reads the step's checkpoint id
    from a task's ``checkpoint_map`` and writes under task ids no task has: LangGraph must go
    on ignoring them (a resume neither runs nor skips a task for them)."""
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.config import get_config
    from langgraph.graph import START, StateGraph

    class State(TypedDict):
        runs: int

    seen: list[str] = []

    async def node(state: State) -> State:
        configurable = get_config()["configurable"]
        seen.append(configurable["checkpoint_map"][""])
        return {"runs": state["runs"] + 1}

    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    graph = builder.compile(checkpointer=InMemorySaver(), interrupt_before=["node"])
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"runs": 0}, config)
    paused = await graph.checkpointer.aget_tuple(config)
    assert paused is not None
    step = {"configurable": {**config["configurable"], "checkpoint_ns": ""}}
    step["configurable"]["checkpoint_id"] = paused.config["configurable"]["checkpoint_id"]
    await graph.checkpointer.aput_writes(step, [("fanout_call_started", "r")], "x~call~1")

    assert await graph.ainvoke(None, config) == {"runs": 1}  # the node ran, once
    assert seen == [paused.config["configurable"]["checkpoint_id"]]


def test_aegra_keeps_its_langgraph_pool_where_the_pool_guard_reads_it() -> None:
    import subprocess

    from langgraph_fanout.production.replicas import PYTHON
    from tests.aegra_cluster import require_aegra

    require_aegra()
    check = (
        "import inspect; from aegra_api.core.database import db_manager, DatabaseManager;"
        "assert db_manager.lg_pool is None;"  # made at start-up, read once it is there
        "assert 'self.lg_pool = AsyncConnectionPool(' in inspect.getsource(DatabaseManager)"
    )
    done = subprocess.run([str(PYTHON), "-c", check], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_langgraph_still_saves_an_input_before_validating_it() -> None:
    """What ``CheckedGraph.of`` (``langgraph_fanout/checked_graph.py``) works around.

    Fails on the next LangGraph minor (``langgraph<1.3`` in pyproject.toml): look for a public
    way to check an input before it is saved, then lift the pin.
    """
    from importlib.metadata import version

    import pytest
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import StateGraph

    from graphs import article
    from langgraph_fanout.checked_graph import CheckedGraph
    from state.inputs import InvalidInputError

    assert version("langgraph").startswith("1.2."), "a new LangGraph minor: see this docstring"
    saver = InMemorySaver()
    unchecked = StateGraph.compile(article.builder, checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(InvalidInputError):
        unchecked.invoke({"topic": ""}, config)
    assert saver.get_tuple(config) is not None  # the refused input was saved first
    assert vars(CheckedGraph.of(unchecked)).keys() == vars(unchecked).keys() - {"__orig_class__"}
