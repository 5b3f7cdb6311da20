"""Where nodes run under Temporal: LLM nodes as activities, other steps in the workflow."""

from __future__ import annotations

from functools import partial, wraps
from typing import Any

from langgraph.graph import StateGraph

from langgraph_fanout.placement import AsyncFunction
from langgraph_fanout.temporal.batches import WORKERS, batched, run_batch
from langgraph_fanout.temporal.policy import activity_options
from langgraph_fanout.temporal.spending import HELD_BACK
from langgraph_fanout.workflows import task_label


def work_label(node: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The summary of an activity of worker ``node``: what its batch works on.

    Its first task's label (the workflow entry's ``Worker.label``) and how many more. The
    plugin calls it in the workflow with the node's arguments (bound to ``node`` first);
    ``args[0]`` is the batch. Shown in the Temporal UI and in ``fanout``'s progress view.
    """
    batch = args[0] if args else None
    if not isinstance(batch, dict) or not isinstance(tasks := batch.get("tasks"), list):
        return None
    first = task_label(node, tasks[0]) if tasks else ""
    return f"{first} (+{len(tasks) - 1} more)" if len(tasks) > 1 else first or None


class ActivityPlacement:
    """A :class:`langgraph_fanout.placement.Placement` for Temporal's LangGraph plugin.

    Nodes are added as the bare async functions (the plugin needs LangGraph's own wrapper
    and refuses LangGraph retry policies): each LLM node is an activity with
    :func:`langgraph_fanout.temporal.policy.activity_options`, each other step runs in the
    workflow, and routers are the functions themselves (async, so the workflow sandbox runs them
    inline).
    """

    def add_llm_node(
        self,
        builder: StateGraph[Any, Any, Any, Any],
        node: AsyncFunction,
        *,
        parallel: bool = False,
    ) -> None:
        """Add ``node`` as an activity, retried by Temporal.

        Held back by a spending limit, it defers itself (``parallel``) or pauses the run.
        """
        HELD_BACK[node.__name__] = "defer" if parallel else "pause"
        metadata = {"execute_in": "activity", **activity_options()}
        builder.add_node(node.__name__, node, metadata=metadata)

    def add_worker_node(self, builder: StateGraph[Any, Any, Any, Any], node: AsyncFunction) -> None:
        """Add ``node`` as an activity that runs a batch of its tasks (``batches``)."""
        WORKERS[node.__name__] = node
        summary = partial(work_label, node.__name__)
        metadata = {"execute_in": "activity", "summary_fn": summary, **activity_options()}
        batch_runner: AsyncFunction = run_batch
        builder.add_node(node.__name__, batch_runner, metadata=metadata)

    def add_step(self, builder: StateGraph[Any, Any, Any, Any], step: AsyncFunction) -> None:
        """Add ``step`` to run inside the workflow (deterministic, no I/O)."""
        builder.add_node(step.__name__, step, metadata={"execute_in": "workflow"})

    def router(self, route: AsyncFunction) -> AsyncFunction:
        """``route`` (its name too), its Sends to workers batched (it runs inside the workflow)."""

        @wraps(route)
        async def batching(state: Any) -> Any:
            return batched(await route(state))

        return batching
