"""Spending limits on Temporal: the run's workflow admits every LLM call, pauses at the limit,
and goes on when a resume raises it, across worker restarts.

Every count is the fake LLM's: the requests it received.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.temporal_cluster import temporal_binary

temporal_binary()  # skips the module (fails under CI) without the [temporal] extra

from langgraph.types import Command  # noqa: E402
from temporalio.client import Client, WorkflowUpdateFailedError  # noqa: E402

from langgraph_fanout.temporal.client import raise_limits, run_graph  # noqa: E402
from langgraph_fanout.temporal.worker import serving  # noqa: E402
from state.context import Context  # noqa: E402
from state.spending import is_spending_pause  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.fanout_cli import fanout, json_result  # noqa: E402
from tests.test_durability import research_calls  # noqa: E402
from tests.test_spending_limits import FOUR_QUESTIONS, MINIMUM  # noqa: E402

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(240)]


async def test_a_temporal_run_pauses_at_its_limits_and_goes_on_when_they_are_raised(
    fake_llm: FakeLLM, client: Client, address: str, task_queue: str, tmp_path: Path
) -> None:
    """Limit 3: two researchers held back, the run pauses once (exit 5). Raised to 5: they
    run, and the writer, alone, pauses the run. Raised to 6, on a worker started since: the
    writer runs. Six calls, the run's minimum."""
    fake_llm.add_rules(FOUR_QUESTIONS)
    on_temporal = ["--temporal", address, "--task-queue", task_queue]

    async def command(*args: str) -> tuple[int, str, str]:
        done = await asyncio.to_thread(fanout, fake_llm, tmp_path, *args, *on_temporal)
        return done.returncode, done.stdout, done.stderr

    async with serving(client, task_queue):
        first = await command("research", "tides", "--thread", "t", "--max-llm-calls", "3")
        second = await command("resume", "t", "--max-llm-calls", "5")
        shown = await command("show", "t")
    async with serving(client, task_queue):  # a worker started since
        last = await command("resume", "t", "--max-llm-calls", "6", "--json")
        tokens_only = await command("research", "x", "--max-total-tokens", "500")
        unlimited = await command("research", "tides", "--thread", "u", "--json")
        raised = await command("resume", "u", "--max-llm-calls", "9")

    assert first[0] == 5, first[2]
    assert "paused at the spending limit (max_llm_calls=3): 3 LLM calls started" in first[2]
    (held,) = [line for line in first[2].splitlines() if line.startswith("not started: ")]
    assert held.count("research_question: Fake questions") == 2, held  # whichever asked last
    assert f"go on: fanout resume t --temporal {address} --task-queue {task_queue}" in first[2]
    assert second[0] == 5, second[2]
    assert "paused at the spending limit (max_llm_calls=5): 5 LLM calls started" in second[2]
    assert "not started: write_report" in second[2]
    assert "status: at limit" in shown[1], shown
    assert last[0] == 0, last[2]
    output = json_result(subprocess.CompletedProcess([], *last))
    assert output["task_count"] == 4
    assert output["usage"]["llm_calls"] == 6  # held-back activities made no call
    assert research_calls(fake_llm.log()) == {role: 2 for role in MINIMUM}  # and "u"'s
    assert tokens_only[0] == 2, tokens_only[2]
    assert "needs max_llm_calls of at most 1900" in tokens_only[2]
    assert unlimited[0] == 0, unlimited[2]
    assert raised[0] == 2 and "the run took no limits: workflow execution already" in raised[2]


async def test_from_python_the_pause_is_an_interrupt_and_a_resume_with_raised_limits_goes_on(
    fake_llm: FakeLLM, client: Client, task_queue: str
) -> None:
    """Evaluation, limit 2: one of the three branches held back (it defers itself), the
    aggregator after it; ``Command(resume=True)`` with a limit of 4 runs just those two."""
    text = {"text": "Tides rise twice a day."}
    paused, done = await paused_then_raised(client, task_queue, "evaluation", text, 2, 4)
    calls = len(fake_llm.log())

    async with serving(client, task_queue):  # a run without limits, waiting at its review
        reviewed = Context(model="openai:fake-model", review_plan=True)
        run_id = f"reviewed-{task_queue}"
        topic = {"topic": "tides"}
        await run_graph(client, "research", topic, reviewed, run_id=run_id, task_queue=task_queue)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await raise_limits(client.get_workflow_handle(run_id), Context(max_llm_calls=9))
        reject = Command(resume={"reject": True})
        await run_graph(client, "research", reject, run_id=run_id, task_queue=task_queue)

    assert "started without spending limits: none to raise" in str(refused.value.cause)
    (interrupt,) = paused["__interrupt__"]
    assert is_spending_pause(interrupt.value)
    assert interrupt.value["spent"]["llm_calls"] == 2
    assert interrupt.value["limits"] == {"max_llm_calls": 2}
    assert len(interrupt.value["not_started"]) == 1
    assert len(done["evaluations"]) == 3
    assert calls == 4  # three branches and the aggregator, none twice


async def test_every_attempt_of_a_retried_activity_counts(
    fake_llm: FakeLLM, client: Client, task_queue: str
) -> None:
    """Researcher 1 answered 500 twice: Temporal retries its activity, each attempt's call is
    admitted; limit 6 pauses before its third attempt, a limit of 8 finishes the run."""
    fake_llm.add_rules(
        FOUR_QUESTIONS, {"match": "Fake questions 1 for", "fault": "500", "times": 2}
    )
    topic = {"topic": "tides"}
    paused, done = await paused_then_raised(client, task_queue, "research", topic, 6, 8)

    # plan, q1 (500), q2, q3, q4, q1 (500): six; q1's third attempt waits for the resume
    assert paused["__interrupt__"][0].value["spent"]["llm_calls"] == 6
    assert done["task_count"] == 4
    assert research_calls(fake_llm.log()) == MINIMUM | {"q1": 3}


async def paused_then_raised(
    client: Client, task_queue: str, graph: str, graph_input: dict[str, Any], limit: int,
    raised: int,
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """``graph`` run from Python with ``max_llm_calls=limit``, then resumed with ``raised``:
    what each returned."""
    run_id = f"{graph}-{task_queue}"
    async with serving(client, task_queue):
        paused = await run_graph(
            client, graph, graph_input, Context(model="openai:fake-model", max_llm_calls=limit),
            run_id=run_id, task_queue=task_queue,
        )  # fmt: skip
        done = await run_graph(
            client, graph, Command(resume=True), Context(max_llm_calls=raised),
            run_id=run_id, task_queue=task_queue,
        )  # fmt: skip
    return paused, done
