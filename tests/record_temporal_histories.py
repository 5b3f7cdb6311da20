"""Record one history of each workflow into tests/temporal_histories/ (for replay tests).

Run after a deliberate change to the graphs or workflows, then commit the files:
``python -m tests.record_temporal_histories``. Until then, ``test_recorded_histories_still_replay``
tells whether runs recorded by the previous version still replay with today's code.
"""

from __future__ import annotations

import asyncio
import os

from temporalio.testing import WorkflowEnvironment

from fake_llm import start_fake_llm
from state.context import Context
from temporal_runs.client import start_run
from temporal_runs.worker import new_worker
from tests.temporal_cluster import temporal_binary
from tests.test_temporal import HISTORIES, INPUTS


async def record() -> None:
    """Run each graph on the fake LLM and save its history as JSON."""
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary())
    try:
        async with new_worker(env.client, "record"):
            for graph, graph_input in INPUTS.items():
                handle = await start_run(
                    env.client, graph, graph_input, Context(model="openai:fake-model"),
                    run_id=f"recorded-{graph}", task_queue="record",
                )  # fmt: skip
                await handle.result()
                history = await handle.fetch_history()
                (HISTORIES / f"{graph}.json").write_text(history.to_json())
    finally:
        await env.shutdown()


if __name__ == "__main__":
    with start_fake_llm() as fake:
        os.environ.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="test-key")
        HISTORIES.mkdir(exist_ok=True)
        asyncio.run(record())
