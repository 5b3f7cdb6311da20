"""A worker that runs every workflow and its LLM activities; start one per machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from langchain_core.env import get_runtime_environment
from langgraph.graph import StateGraph
from langsmith.utils import tracing_is_enabled
from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.plugin import SimplePlugin
from temporalio.worker import Worker

from langgraph_fanout.temporal import DEFAULT_TASK_QUEUE
from langgraph_fanout.temporal.placement import ActivityPlacement
from langgraph_fanout.temporal.policy import HEARTBEAT_THROTTLE, RunInterceptor
from langgraph_fanout.temporal.versioning import (
    Promotion,
    build_id,
    deployment_config,
    promote_if_new,
)
from langgraph_fanout.temporal.workflows import GraphWorkflow
from langgraph_fanout.workflows import WORKFLOWS

STICKY_TIMEOUT = timedelta(seconds=3)
"""How long a run's next workflow task waits for the worker that cached the run before any
other worker replays it from history (Temporal's default is 10 s)."""


def graph_builders() -> dict[str, StateGraph[Any, Any, Any, Any]]:
    """A fresh builder of each graph with :class:`ActivityPlacement` (the plugin rewires it)."""
    placement = ActivityPlacement()
    return {name: w.module.build(placement) for name, w in WORKFLOWS.items()}


def tracing_plugins() -> list[SimplePlugin]:
    """Temporal's LangSmith plugin when LangSmith tracing is on, else none.

    With it, a run is one trace as in-process: the activities' LLM runs go under the node runs
    of the workflow (docs/temporal.md, Tracing).

    Raises:
        ImportError: tracing is on and the plugin is not installed (what to install).
    """
    if not tracing_is_enabled():
        return []
    try:
        from temporalio.langsmith import LangSmithPlugin
    except ImportError as exc:
        raise ImportError(
            "LangSmith tracing on Temporal workers needs Temporal's LangSmith plugin: "
            "pip install --no-deps temporalio-langsmith==0.1.0 (docs/temporal.md, Tracing), "
            "or unset LANGSMITH_TRACING"
        ) from exc

    # LangChain's tracer reads the runtime environment once per process; inside the workflow
    # sandbox, platform.platform()'s import of subprocess is refused and the first runs of the
    # process would not be sent. Read here, it is cached for the sandbox too.
    get_runtime_environment()
    return [LangSmithPlugin()]


def new_worker(
    client: Client,
    task_queue: str = DEFAULT_TASK_QUEUE,
    *,
    build: str | None = None,
    max_concurrent_activities: int | None = None,
    **options: Any,
) -> Worker:
    """A worker for ``task_queue`` serving every workflow and every LLM node.

    It is a worker of version ``build`` (default:
    :func:`langgraph_fanout.temporal.versioning.build_id`), to which the runs it starts stay
    pinned. Activities are not run eagerly on the worker that schedules them, so they spread over
    every live worker of the version. ``options`` go to
    :class:`temporalio.worker.Worker`.
    """
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[GraphWorkflow],
        plugins=[LangGraphPlugin(graphs=graph_builders()), *tracing_plugins()],
        interceptors=[RunInterceptor()],
        deployment_config=deployment_config(task_queue, build or build_id()),
        disable_eager_activity_execution=True,
        sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT,
        max_concurrent_activities=max_concurrent_activities,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        **options,
    )


@asynccontextmanager
async def serving(
    client: Client,
    task_queue: str = DEFAULT_TASK_QUEUE,
    *,
    build: str | None = None,
    promote: bool = True,
    **options: Any,
) -> AsyncIterator[tuple[Worker, Promotion]]:
    """Run a :func:`new_worker` for the block, its version made current if it is new.

    Yields the worker and what became of its version (``promote=False``: left as it is).
    """
    build = build or build_id()
    worker = new_worker(client, task_queue, build=build, **options)
    async with worker:
        if promote:
            promotion = await promote_if_new(client, task_queue, build)
        else:
            promotion = Promotion(False, "left as it is (--no-promote)")
        yield worker, promotion
