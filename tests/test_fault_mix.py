"""Runs survive what a provider throws at them: a mix of 500, 429 and malformed replies."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from graphs.research import builder
from langgraph_fanout.llm.retry import is_retryable

MIX = ["500", "429", "invalid_json"]


def _mix(rate: float, seed: int) -> dict[str, Any]:
    return {"fault_rate": rate, "fault_mix": MIX, "seed": seed, "retry_after": 0.2}


async def _run(graph: Any, n: int) -> tuple[dict[str, Any], BaseException | None]:
    config = {"configurable": {"thread_id": f"run-{n}"}}
    try:
        return await graph.ainvoke({"topic": f"Topic number {n}"}, config), None
    except Exception as exc:  # noqa: BLE001 - the test classifies it
        return {}, exc


async def test_fifty_runs_at_a_twenty_percent_fault_mix_all_finish(fake_llm) -> None:
    fake_llm.add_rules(_mix(0.2, seed=1))
    graph = builder.compile(checkpointer=InMemorySaver())

    results = await asyncio.gather(*(_run(graph, n) for n in range(50)))

    failures = [repr(error) for _, error in results if error is not None]
    assert failures == []
    assert all(out["task_count"] == len(out["findings"]) == 3 for out, _ in results)
    injected = [r["fault"] for r in fake_llm.log() if r["fault"]]
    assert set(injected) == set(MIX)  # every kind happened
    assert 0.15 < len(injected) / len(fake_llm.log()) < 0.25


async def test_429_waits_what_retry_after_asks(fake_llm) -> None:
    fake_llm.add_rules({"schema": "ResearchPlan", "fault": "429", "retry_after": 1.0, "times": 1})
    graph = builder.compile(checkpointer=InMemorySaver())

    output, error = await _run(graph, 0)

    assert error is None and output["task_count"] == 3
    first, second = fake_llm.log()[:2]
    assert first["status"] == 429 and second["schema"] == "ResearchPlan"
    assert second["t_start"] - first["t_end"] >= 1.0  # no sooner than asked


async def test_runs_that_fail_at_a_seventy_percent_mix_are_clean_and_resumable(fake_llm) -> None:
    # At 50% every run finishes (5 attempts x 3 requests); at 70% this seed fails one in 20.
    fake_llm.add_rules(_mix(0.7, seed=1))
    graph = builder.compile(checkpointer=InMemorySaver())

    results = await asyncio.gather(*(_run(graph, n) for n in range(20)))
    failed = [n for n, (_, error) in enumerate(results) if error is not None]
    assert failed  # the schedule is deterministic: the same requests fail every time

    for n in failed:
        error = results[n][1]
        assert error is not None and is_retryable(error), repr(error)
        where = str(error) + repr(getattr(error, "__notes__", ""))
        assert any(n in where for n in ("plan_research", "research_question", "write_report"))
    fake_llm.reset()  # the provider recovers
    for n in failed:
        config = {"configurable": {"thread_id": f"run-{n}"}}
        resumed = await graph.ainvoke(None, config)
        assert resumed["task_count"] == len(resumed["findings"]) == 3
