"""Submit a graph run to Temporal and wait for its output."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.envconfig import ClientConfig

from state.context import Context
from temporal_runs.worker import DEFAULT_TASK_QUEUE
from temporal_runs.workflows import WORKFLOWS, RunRequest

SETTLE_SECONDS = 0.02


async def settle() -> None:
    """Let Temporal's client threads finish handing back their last replies.

    The Rust thread that completes a call's future lets go of the GIL midway (asyncio's
    wake-up write); if the interpreter starts shutting down before that thread gets the GIL
    back, the process aborts with "PyGILState_Release: thread state ... must be current"
    (temporalio/sdk-python issue 300). Blocking a moment hands it the GIL. Await this
    after a client's last call when the process exits soon after.
    """
    await asyncio.sleep(SETTLE_SECONDS)


async def connect(address: str) -> Client:
    """A client of the Temporal server at ``address`` (``HOST:PORT``).

    Namespace, TLS and API key come from Temporal's own client settings, as for the
    ``temporal`` CLI: ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*`` or a
    profile in ``temporal.toml`` (``TEMPORAL_PROFILE``); without any, namespace ``default``
    over plain TCP (a dev server).
    """
    settings = ClientConfig.load_client_connect_config()
    settings["target_host"] = address
    return await Client.connect(**settings)


async def start_run(
    client: Client,
    graph: str,
    graph_input: dict[str, Any],
    context: Context | None = None,
    *,
    run_id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> WorkflowHandle[Any, dict[str, Any]]:
    """Start ``graph`` (``evaluation``, ``article`` or ``research``) as a workflow.

    ``run_id`` (the thread id, a new UUID when None) becomes the workflow id. Any live
    worker on ``task_queue`` picks the run up; it survives the death of any of them.
    """
    if graph not in WORKFLOWS:
        raise ValueError(f"unknown graph {graph!r}; expected one of {sorted(WORKFLOWS)}")
    request = RunRequest(input=graph_input, context=asdict(context or Context()))
    return await client.start_workflow(
        graph,  # the workflow type
        request,
        id=run_id or str(uuid.uuid4()),
        task_queue=task_queue,
        result_type=dict,
    )


async def run_graph(
    client: Client,
    graph: str,
    graph_input: dict[str, Any],
    context: Context | None = None,
    *,
    run_id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> dict[str, Any]:
    """Start ``graph`` as a workflow and wait for its output (the graph's output schema)."""
    handle = await start_run(
        client, graph, graph_input, context, run_id=run_id, task_queue=task_queue
    )
    try:
        return await handle.result()
    finally:
        await settle()
