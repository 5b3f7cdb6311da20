"""The node layer: module-level async nodes, both call styles, no private imports, no executor."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph

from graphs import article, evaluation, research
from langgraph_fanout.placement import SyncOrAsync
from langgraph_fanout.workflows import WORKFLOWS
from state.inputs import InvalidInputError
from tests.callbacks import NodeAttempts

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = {name: w.module for name, w in WORKFLOWS.items()}


def _functions(builder: Any) -> dict[str, Any]:
    """Node name -> the function behind it, for every node of ``builder``."""
    functions = {}
    for name, spec in builder.nodes.items():
        assert isinstance(spec.runnable, SyncOrAsync), name
        functions[name] = spec.runnable.function
    return functions


@pytest.mark.parametrize("name", GRAPHS)
def test_every_node_is_a_named_module_level_async_function(name: str) -> None:
    for node, function in _functions(GRAPHS[name].builder).items():
        assert inspect.iscoroutinefunction(function), node
        assert function.__name__ == node
        assert "<" not in function.__qualname__, function.__qualname__  # no lambda, no closure
        module = __import__(function.__module__, fromlist=["_"])
        assert getattr(module, node) is function


@pytest.mark.parametrize("name", GRAPHS)
def test_routers_are_async_so_no_executor_runs_them(name: str) -> None:
    for branches in GRAPHS[name].builder.branches.values():
        for branch in branches.values():
            assert isinstance(branch.path, SyncOrAsync)
            assert inspect.iscoroutinefunction(branch.path.function), branch.path.name


def test_the_evaluation_graph_module_names_its_three_branches() -> None:
    source = (ROOT / "graphs" / "evaluation.py").read_text()
    for branch in ("evaluate_safety", "evaluate_tone", "evaluate_audience_fit"):
        assert f"add_llm_node(builder, {branch}, parallel=True)" in source
    assert 'names = ["evaluate_safety", "evaluate_tone", "evaluate_audience_fit"]' in source
    assert 'builder.add_edge(name, "check_spending")' in source


class ThreadsOfLLMCalls(BaseCallbackHandler):
    """Records the thread each LLM call starts on."""

    run_inline = True

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.threads.add(threading.get_ident())


async def test_async_callers_make_every_llm_call_on_their_own_loop(fake_llm) -> None:
    seen = ThreadsOfLLMCalls()
    result = await article.graph.ainvoke({"topic": "Kites"}, {"callbacks": [seen]})

    assert len(result["completed_sections"]) >= 1
    assert seen.threads == {threading.get_ident()}  # no thread pool, no background loop


def test_invoke_works_from_a_thread_that_runs_an_event_loop(fake_llm) -> None:
    async def notebook_cell() -> dict[str, Any]:
        return evaluation.graph.invoke({"text": "A poem about spring."})  # sync call in a loop

    result = asyncio.run(notebook_cell())

    assert result["votes"] == 3
    assert len(fake_llm.log()) == 4


def test_invoke_and_ainvoke_give_the_same_output(fake_llm) -> None:
    sync = research.graph.invoke({"topic": "Tides"})
    fake_llm.reset()
    async_ = asyncio.run(research.graph.ainvoke({"topic": "Tides"}))
    assert sync == async_


@pytest.mark.parametrize("name", GRAPHS)
async def test_invalid_input_is_refused_before_any_node_and_never_retried(
    fake_llm, name: str
) -> None:
    payload = {WORKFLOWS[name].input_field: " "}
    starts = NodeAttempts()
    with pytest.raises(InvalidInputError):
        await GRAPHS[name].graph.ainvoke(payload, {"callbacks": [starts]})
    assert starts.counts == {}  # langgraph_fanout/checked_graph.py: refused before the run starts

    # Compiled without that check, the first node refuses it, in one attempt.
    unchecked = StateGraph.compile(GRAPHS[name].builder)
    with pytest.raises(InvalidInputError):
        await unchecked.ainvoke(payload, {"callbacks": [starts]})
    assert set(starts.counts.values()) == {1}  # each first node refused it, once
    assert fake_llm.log() == []


async def test_a_second_research_run_on_a_thread_starts_with_empty_findings(fake_llm) -> None:
    durable = research.builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "times": 1, "response": {"questions": ["A?", "B?", "C?"]}}
    )
    first = await durable.ainvoke({"topic": "Bees"}, config)
    fake_llm.add_rules({"schema": "ResearchPlan", "response": {"questions": ["D?", "E?"]}})
    second = await durable.ainvoke({"topic": "Wasps"}, config)

    assert [f["question"] for f in first["findings"]] == ["A?", "B?", "C?"]
    assert [f["question"] for f in second["findings"]] == ["D?", "E?"]
    assert second["task_count"] == 2
    writer_prompt = fake_llm.log()[-1]["last_user"]
    assert "A?" not in writer_prompt and "D?" in writer_prompt
