"""Fan-out workers on Temporal: at most :data:`MAX_WORKER_ACTIVITIES` activities per fan-out.

Every activity costs the Temporal server and the workers about 17 ms of CPU, an in-process
worker about 3 ms: one activity per section made an article of 1,000 sections four times
slower on Temporal. So the Sends of a fan-out are grouped, in order, into batches of
``ceil(N / MAX_WORKER_ACTIVITIES)`` tasks (one task each up to that many), and each batch is
one activity that runs its tasks at once and returns their updates joined in task order: the
state ends up as in-process.

Nothing finished is lost to a batch's retry: each task's update is saved in the database as it
finishes (``finished_tasks.py``), then recorded in the activity's heartbeat details (Temporal
keeps them for the next attempt, but sends them at most every 2 s), and a retried batch runs
only the tasks without one. A task that fails lets the others finish first, then fails the
attempt with its error, so Temporal's retry policy applies to it as to a single worker (a
batch's attempts are shared by its tasks).

Traced (LangSmith), each task of a batch is a run of its own named after the worker node,
under the batch's node run, as each worker is in-process.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import langsmith
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Send
from typing_extensions import TypedDict

from langgraph_fanout.llm.spending import SpendingLimitReached
from langgraph_fanout.placement import AsyncFunction
from langgraph_fanout.temporal.finished_tasks import FinishedTasks
from langgraph_fanout.temporal.policy import checkpoint, earlier_progress
from state.spending import Deferred

MAX_WORKER_ACTIVITIES = 50
"""Most activities one fan-out makes; a wider one is batched."""

TASKS_AT_ONCE = 100
"""Most tasks of batches one worker process runs at once. Without a bound, 1,000 LLM calls
started together crowd the event loop for seconds, and the activities' heartbeats with them."""
_at_once = asyncio.Semaphore(TASKS_AT_ONCE)

WORKERS: dict[str, AsyncFunction] = {}
"""Fan-out worker functions by node name (``ActivityPlacement.add_worker_node`` fills it)."""


class Batch(TypedDict):
    """What a worker activity gets: the ``Send`` payloads of its tasks, in fan-out order."""

    tasks: list[Any]


def batched(route: Any) -> Any:
    """``route`` (a router's result) with its Sends to workers grouped into batches."""
    if not isinstance(route, list) or not route or not isinstance(route[0], Send):
        return route
    size = math.ceil(len(route) / MAX_WORKER_ACTIVITIES)
    batches = []
    for start in range(0, len(route), size):
        group = route[start : start + size]
        (node,) = {send.node for send in group}  # one fan-out sends to one worker node
        batches.append(Send(node, Batch(tasks=[send.arg for send in group])))
    return batches


async def run_batch(batch: Batch, runtime: Runtime[Any]) -> dict[str, Any]:
    """The activity of a worker node: run each task not done yet; their updates joined."""
    node = get_config()["metadata"]["langgraph_node"]
    worker = WORKERS[node]
    tasks = batch["tasks"]
    finished = FinishedTasks(len(tasks))
    earlier = earlier_progress() or {}  # an earlier attempt's finished tasks
    done: dict[int, dict[str, Any]] = {int(i): update for i, update in earlier.items()}
    done = await finished.earlier() | done

    async def run(index: int) -> None:
        async with _at_once:
            with _task_run(node, tasks[index], len(tasks)):
                try:
                    done[index] = await worker(tasks[index], runtime=runtime)
                except SpendingLimitReached:  # to the budget check, which pauses the run
                    done[index] = {"deferred": [Deferred(node=node, task=tasks[index])]}
        await finished.save(index, done[index])
        checkpoint({str(i): update for i, update in done.items()})

    pending = [i for i in range(len(tasks)) if i not in done]
    outcomes = await asyncio.gather(*(run(i) for i in pending), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return joined([done[i] for i in range(len(tasks))])


def _task_run(node: str, task: Any, size: int) -> AbstractContextManager[Any]:
    """A trace run of its own for a task of a batch of ``size`` (one task: the node's run)."""
    if size == 1:
        return nullcontext()
    return langsmith.trace(node, "chain", inputs=task, metadata={"langgraph_node": node})


def joined(updates: list[dict[str, Any]]) -> dict[str, Any]:
    """The updates of a batch's tasks as one: each key's lists concatenated, in order.

    Workers write only keys that several branches write, which are lists with an adding
    reducer (``state/``), so this is what applying them one by one would give.
    """
    result: dict[str, list[Any]] = {}
    for update in updates:
        for key, value in update.items():
            if not isinstance(value, list):
                raise TypeError(f"a worker's update of {key!r} is not a list: {value!r:.80}")
            result.setdefault(key, []).extend(value)
    return dict(result)
