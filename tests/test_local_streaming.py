"""The embedded model streams workers' tokens and pauses for plan review like any other."""

from collections import defaultdict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphs.article import builder
from graphs.article import graph as article
from state.context import Context
from tests.requirements import local_model_weights

pytestmark = pytest.mark.local_model
local_model_weights()

LOCAL = Context(model="local", max_tokens=96, max_sections=2)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FANOUT_MODEL"):
        monkeypatch.delenv(name, raising=False)


async def test_workers_stream_token_by_token_and_the_plan_does_not():
    chunks: dict[str, list[str]] = defaultdict(list)
    nodes = {}
    final = {}
    async for mode, data in article.astream(
        {"topic": "Composting"}, stream_mode=["messages", "values"], context=LOCAL
    ):
        if mode == "values":
            final = data
            continue
        chunk, meta = data
        chunks[meta["langgraph_checkpoint_ns"]].append(chunk.text)
        nodes[meta["langgraph_checkpoint_ns"]] = meta

    written = {s["name"]: s["content"] for s in final["completed_sections"]}
    workers = [k for k, m in nodes.items() if m["langgraph_node"] == "write_section"]
    assert len(workers) == len(written) >= 1
    for task in workers:
        assert len(chunks[task]) > 3
        assert "".join(chunks[task]).strip() == written[nodes[task]["section"]]
    (planner,) = [k for k, m in nodes.items() if m["langgraph_node"] == "plan_sections"]
    assert nodes[planner]["fanout_structured"] is True
    assert len(chunks[planner]) == 1  # the whole JSON reply, once: not streamed


async def test_plan_review_on_the_embedded_model():
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "local-review"}}
    context = Context(model="local", max_tokens=96, max_sections=2, review_plan=True)

    paused = await graph.ainvoke({"topic": "Composting"}, config, context=context)
    edit = {"sections": [{"name": "Why compost", "description": "The benefits."}]}
    result = await graph.ainvoke(Command(resume=edit), config, context=context)

    assert 1 <= len(paused["__interrupt__"][0].value["sections"]) <= 2
    assert result["review"]["decision"] == "edited"
    assert [s["name"] for s in result["completed_sections"]] == ["Why compost"]
