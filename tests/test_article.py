"""The orchestrator-workers article graph through the real client and the fake server."""

import logging

import pytest

from graphs.article import graph
from langgraph_fanout.llm.retry import LLM_ATTEMPTS, MalformedOutputError
from state.context import Context


def plan(*names: str) -> dict:
    return {"sections": [{"name": n, "description": f"About {n}."} for n in names]}


async def test_one_worker_per_section_and_plan_order_when_later_sections_finish_first(fake_llm):
    names = ["Alpha", "Beta", "Gamma", "Delta"]
    fake_llm.add_rules(
        {"schema": "Sections", "response": plan(*names)},
        # Earlier sections are slower: workers finish in reverse plan order.
        *({"match": f"Section: {n}\n", "latency": 0.4 - 0.1 * i} for i, n in enumerate(names)),
    )

    result = await graph.ainvoke({"topic": "  Sleep science  "})

    writes = [r for r in fake_llm.log() if r["schema"] is None]
    assert len(writes) == len(names)
    finished = sorted(writes, key=lambda r: r["t_end"])
    assert "Delta" in finished[0]["last_user"]  # the last section finished first
    assert [s["name"] for s in result["completed_sections"]] == names
    assert [s["name"] for s in result["sections"]] == names
    assert result["article"].startswith("# Sleep science\n\n## Alpha\n\n")
    positions = [result["article"].index(f"## {n}") for n in names]
    assert positions == sorted(positions)
    assert all(s["content"].startswith("Fake answer to:") for s in result["completed_sections"])


@pytest.mark.parametrize(
    ("planned", "context", "expected"),
    [(12, None, 8), (12, Context(max_sections=3), 3), (5, Context(max_sections=5), 5)],
    ids=["default-cap-8", "per-run-cap-3", "at-cap"],
)
async def test_fan_out_is_capped(fake_llm, caplog, planned, context, expected):
    fake_llm.add_rules({"schema": "Sections", "response": plan(*(f"S{i}" for i in range(planned)))})

    with caplog.at_level(logging.WARNING):
        result = await graph.ainvoke({"topic": "Tea"}, context=context)

    assert len(result["completed_sections"]) == expected
    assert len([r for r in fake_llm.log() if r["schema"] is None]) == expected
    assert (f"keeping the first {expected}" in caplog.text) is (planned > expected)
    max_sections = (context or Context()).max_sections
    assert f"between 2 and {max_sections} sections" in fake_llm.log()[0]["system"]


async def test_empty_plan_is_retried_then_a_clear_error(fake_llm):
    fake_llm.add_rules({"schema": "Sections", "response": {"sections": []}})

    with pytest.raises(
        MalformedOutputError,
        match="plan_sections: the model planned 0 sections; at least 1 are needed",
    ):
        await graph.ainvoke({"topic": "Tea"})

    assert len(fake_llm.log()) == LLM_ATTEMPTS  # no worker


async def test_second_run_on_a_thread_starts_clean(fake_llm):
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.article import builder

    durable = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    fake_llm.add_rules({"schema": "Sections", "times": 1, "response": plan("One", "Two")})
    first = await durable.ainvoke({"topic": "Tea"}, config)
    fake_llm.add_rules({"schema": "Sections", "response": plan("Three")})
    second = await durable.ainvoke({"topic": "Coffee"}, config)

    assert [s["name"] for s in first["completed_sections"]] == ["One", "Two"]
    assert [s["name"] for s in second["completed_sections"]] == ["Three"]
