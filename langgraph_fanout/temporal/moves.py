"""Moving a Temporal run onto the current code, its finished work reused.

A run is pinned to the version of the code that started it (``versioning.py``). When that code
is gone for good, or the run is stuck on a nondeterminism error, :func:`move_run` starts it
again under the same workflow id on the current version (Temporal ends the old one in the same
step), handing the new run the result of every activity the old one finished. The new run's
workflow takes each of those results in place of an activity of the same node on the same
input (``policy.py``), so no finished LLM call is made again; what was in flight runs again,
and a batch cut off midway runs again whole. Nodes renamed since are mapped by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from langgraph_fanout.temporal.policy import CALLS_KEY
from langgraph_fanout.temporal.reuse import activity_key
from langgraph_fanout.temporal.workflows import STATUS
from state.context import Context

MOVED_FROM = "moved_from"
"""The memo key of a moved run that names the Temporal run it was moved from."""


class MoveRefusedError(Exception):
    """The run cannot be moved as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Move:
    """A moved run: its new handle, the results it reuses, and the LLM calls they made."""

    handle: WorkflowHandle[Any, dict[str, Any]]
    reused: int
    reused_calls: int


async def move_run(client: Client, run_id: str, renames: Mapping[str, str] | None = None) -> Move:
    """Start run ``run_id`` again on the current version, reusing its finished activities.

    On the run's own task queue. ``renames``: old node name -> the current code's name, for
    nodes renamed since. What a run moved before reused is reused again.

    Raises:
        MoveRefusedError: the run is not running, or finished nodes the current code has not
            (and ``renames`` does not map): their results would be lost.
    """
    from langgraph_fanout.temporal.client import input_head, request_of
    from langgraph_fanout.temporal.worker import graph_builders

    description = await client.get_workflow_handle(run_id).describe()
    handle = client.get_workflow_handle(run_id, run_id=description.run_id)  # this run's history
    if description.status != WorkflowExecutionStatus.RUNNING:
        status = description.status.name.lower() if description.status else "unknown"
        raise MoveRefusedError(f"run {run_id} is not running ({status}): nothing to move")
    started = await request_of(client, handle)
    if Context.of(started.request.context).has_limits():
        raise MoveRefusedError(
            f"run {run_id} runs under spending limits, which a move would start counting "
            "again: not moved"
        )
    renames = dict(renames or {})
    finished = await _finished_activities(client, handle, started.graph, renames)
    builder = graph_builders()[started.graph]
    unknown = sorted({f["node"] for f in finished} - set(builder.nodes))
    if unknown:
        raise MoveRefusedError(
            f"the current code has no node {', '.join(unknown)}, which run {run_id} finished "
            "work in: if a node was renamed, say so with --rename OLD=NEW; nothing was changed"
        )
    reuse = {done["key"]: done["output"] for done in started.request.reuse}
    reuse |= {f["key"]: f["output"] for f in finished}
    request = replace(started.request, reuse=[{"key": k, "output": v} for k, v in reuse.items()])
    new = await client.start_workflow(
        started.graph,
        request,
        id=run_id,
        task_queue=description.task_queue,
        result_type=dict,
        memo={
            "graph": started.graph,
            "input": input_head(started.request.input),
            STATUS: "running",
            MOVED_FROM: description.run_id,
        },
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        # A run that ended since describe() starts again too, its finished work reused.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    calls = sum(int(output.get(CALLS_KEY, 1)) for output in reuse.values())
    return Move(new, len(reuse), calls)


async def _finished_activities(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    graph: str,
    renames: dict[str, str],
) -> list[dict[str, Any]]:
    """Each activity the run finished: its node (renamed), key and output (JSON)."""
    scheduled: dict[int, tuple[str, Any]] = {}
    finished = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            (activity_input,) = await client.data_converter.decode(attributes.input.payloads)
            scheduled[event.event_id] = (attributes.activity_type.name, activity_input)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            (output,) = await client.data_converter.decode(completed.result.payloads)
            activity_type, activity_input = scheduled[completed.scheduled_event_id]
            node = activity_type.removeprefix(f"{graph}.")
            node = renames.get(node, node)
            key = activity_key(f"{graph}.{node}", activity_input)
            finished.append({"node": node, "key": key, "output": output})
    return finished
