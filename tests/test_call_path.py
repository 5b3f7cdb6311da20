"""What an LLM call of a run costs beyond the model's own work: no thread-pool job of ours.

langchain-core runs a callback handler that is neither async nor inline on the event loop's
default executor, three events a call; at a fan-out of 1,000 those hops were a quarter of the
run's CPU. A run counts its spending from each reply instead.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from graphs.article import builder
from langgraph_fanout.llm.call import messages
from langgraph_fanout.llm.models import model_for
from state.article import Sections
from state.context import Context
from tests.fake_llm import FakeLLM


class CountingExecutor(ThreadPoolExecutor):
    """The default executor, counting the jobs it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.jobs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_counted_run_adds_no_thread_pool_job_to_its_llm_calls(fake_llm: FakeLLM) -> None:
    writers = 3
    fake_llm.add_rules(
        {"schema": "Sections", "response": {"sections": [
            {"name": f"S{i}", "description": f"part {i}"} for i in range(writers)
        ]}}
    )  # fmt: skip
    executor = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    prompt = messages("system", "user")
    await model_for(Context(), "worker").ainvoke(prompt)
    await model_for(Context(), "planner", Sections).ainvoke(prompt)  # warm-up: imports, clients
    executor.jobs = 0
    await model_for(Context(), "worker").ainvoke(prompt)
    plain = executor.jobs
    executor.jobs = 0
    await model_for(Context(), "planner", Sections).ainvoke(prompt)
    structured = executor.jobs
    executor.jobs = 0

    out = await builder.compile().ainvoke({"topic": "tides"}, context=Context(max_sections=5))

    assert len(out["completed_sections"]) == writers
    assert executor.jobs <= structured + writers * plain  # the models' own, and nothing more
