"""The parallel evaluation graph through the real ChatOpenAI client and the fake server."""

import time

import pytest

from graphs.evaluation import graph
from nodes.evaluation import BRANCHES
from nodes.prompts import CRITERIA

LATENCY = 0.5
TEXT = "Drink water and sleep well before a marathon."


def criterion_marker(name: str) -> str:
    """A substring only that branch's prompt contains."""
    return CRITERIA[name]


async def test_branches_overlap_and_aggregator_runs_once_after_all(fake_llm):
    await graph.ainvoke({"text": TEXT})  # warm up: client creation is not the pattern's cost
    fake_llm.reset()
    fake_llm.configure(latency=LATENCY)

    started = time.perf_counter()
    result = await graph.ainvoke({"text": TEXT})
    wall = time.perf_counter() - started

    verdicts = fake_llm.requests_matching(schema="Verdict")
    aggregations = fake_llm.requests_matching(schema="AggregatedVerdict")
    assert len(verdicts) == 3 and len(aggregations) == 1
    assert max(r["t_start"] for r in verdicts) < min(r["t_end"] for r in verdicts)
    assert aggregations[0]["t_start"] >= max(r["t_end"] for r in verdicts)
    # Critical path is two calls; three sequential branches plus the aggregator would be four.
    assert wall < 0.7 * 4 * LATENCY
    assert result["votes"] == 3 and result["is_appropriate"] is True


def test_sync_invoke_keeps_branch_order_and_counts_votes(fake_llm):
    fake_llm.add_rules(
        {
            "match": criterion_marker("tone"),
            "schema": "Verdict",
            "latency": 0.0,
            "response": {"explanation": "Crude language.", "is_appropriate": False},
        },
        {"match": criterion_marker("safety"), "schema": "Verdict", "latency": 0.2},
        {
            "schema": "AggregatedVerdict",
            "response": {"summary": "Mostly fine; tone is crude.", "is_appropriate": False},
        },
    )

    result = graph.invoke({"text": TEXT})

    assert [e["evaluator"] for e in result["evaluations"]] == list(BRANCHES.values())
    assert result["votes"] == 2
    assert result["evaluations"][1] == {
        "evaluator": "tone",
        "explanation": "Crude language.",
        "is_appropriate": False,
    }
    assert result["summary"] == "Mostly fine; tone is crude."
    assert result["is_appropriate"] is False
    assert set(result) == {"is_appropriate", "summary", "evaluations", "votes"}
    aggregator_prompt = fake_llm.requests_matching(schema="AggregatedVerdict")[0]["last_user"]
    assert "2 of 3 said appropriate" in aggregator_prompt and "Crude language." in aggregator_prompt


async def test_stream_updates_one_per_branch_then_aggregate(fake_llm):
    updates = [u async for u in graph.astream({"text": TEXT}, stream_mode="updates")]

    nodes = [next(iter(u)) for u in updates]
    assert sorted(nodes[:3]) == sorted(BRANCHES)
    assert nodes[3:] == ["check_spending", "aggregate"]  # nothing held back: straight on


async def test_two_runs_in_one_process_on_fresh_event_loops(fake_llm):
    """Async HTTP clients must not leak across event loops (asyncio.run twice)."""
    import asyncio
    import threading

    results = []

    def run() -> None:
        results.append(asyncio.run(graph.ainvoke({"text": TEXT})))

    for _ in range(2):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=30)
    assert [r["votes"] for r in results] == [3, 3]


@pytest.mark.parametrize("max_concurrency", [1, 3], ids=["serial", "parallel"])
async def test_max_concurrency_bounds_parallel_calls(fake_llm, max_concurrency):
    fake_llm.configure(latency=0.1)

    await graph.ainvoke({"text": TEXT}, {"max_concurrency": max_concurrency})

    assert fake_llm.stats()["peak_in_flight"] == max_concurrency
