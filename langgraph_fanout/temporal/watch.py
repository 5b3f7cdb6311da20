"""Follow one run in Temporal until it pauses or ends, whatever happens on the way.

A :class:`RunWatcher` reads the run's history as it grows and its description every
half-second, and turns them into what a person or a script needs to know:

- the activities (``langgraph_fanout.temporal.progress``), for a progress view;
- a pause at the plan review (:class:`Paused`, with the plan);
- a workflow task that keeps failing (:class:`RunStuckError`, within seconds, naming the
  cause: a nondeterminism error, a payload over a limit, a bug), where Temporal itself would
  retry it silently for ever;
- a run that no worker takes (a notice after :data:`NO_WORKER_NOTICE`);
- a Temporal server that went away: the watcher retries with backoff for up to
  :data:`OUTAGE_LIMIT` and goes on where it was (:class:`TemporalUnreachableError` after).
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.enums.v1 import (
    EventType,
    PendingActivityState,
    PendingWorkflowTaskState,
    WorkflowTaskFailedCause,
)
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from langgraph_fanout.temporal.progress import ActivityTracker, Listener, failure_cause
from langgraph_fanout.temporal.versioning import build_id
from langgraph_fanout.temporal.worker import DEFAULT_TASK_QUEUE
from langgraph_fanout.temporal.workflows import STATUS

T = TypeVar("T")

POLL_SECONDS = 0.5
"""How often the run's description (pending attempts, waiting tasks) is read."""
NO_WORKER_NOTICE = 5.0
"""Seconds a task may wait unclaimed before the watcher says it waits for a worker."""
QUERY_TIMEOUT = timedelta(seconds=10)
"""How long a query (a paused run's plan) may wait for a worker to answer it."""
OUTAGE_LIMIT = timedelta(minutes=10)
"""How long the watcher keeps trying to reach an unreachable Temporal server."""
BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Seconds between attempts to reach it again (the last one repeats)."""
TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.CANCELLED,
    }
)
"""RPC failures that an outage or a restart of the server causes: tried again."""
BENIGN_TASK_FAILURES = frozenset(
    {
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_UPDATE,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FAILOVER_CLOSE_COMMAND,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
    }
)
"""Causes Temporal retries a workflow task for as part of normal operation."""


class RunStuckError(Exception):
    """The run's workflow task fails, so the run cannot go on (Temporal keeps retrying it)."""

    def __init__(self, run_id: str, cause: str, message: str, worker: str) -> None:
        self.run_id, self.cause, self.worker = run_id, cause, worker
        hint = (
            "a worker of another code version took the run: start a worker of the version "
            "that started it (fanout worker prints its version), or move the run to the "
            f"current version, its finished work reused: `fanout resume {shlex.quote(run_id)} "
            "--temporal "
            "HOST:PORT --move`"
            if cause == "NON_DETERMINISTIC_ERROR"
            else "the run is kept and retries this task: fix the cause and it goes on"
        )
        super().__init__(
            f"run {run_id} is stuck: its workflow task failed on worker {worker or '?'} "
            f"({cause}): {message}; {hint}"
        )


class TemporalUnreachableError(Exception):
    """The Temporal server could not be reached for :data:`OUTAGE_LIMIT`."""


@dataclass(frozen=True)
class Paused:
    """The run waits for a decision on its plan (``plan``: the interrupt value)."""

    plan: dict[str, Any]


@dataclass(frozen=True)
class AtLimit:
    """The run waits at a spending limit (``pause``: what it spent, what did not start)."""

    pause: dict[str, Any]


Notice = Callable[[str], None]
"""Called with a line for a person: waiting for a worker, lost and found the server."""


class RunWatcher:
    """Follows the run behind ``handle`` (see the module)."""

    def __init__(
        self,
        client: Client,
        handle: WorkflowHandle[Any, Any],
        task_queue: str,
        *,
        listener: Listener | None = None,
        notice: Notice | None = None,
    ) -> None:
        self.client = client
        self.handle = handle
        self.task_queue = task_queue
        self.tracker = ActivityTracker(listener)
        self.notice = notice or (lambda text: None)
        self._down_since: float | None = None
        self._back_at = 0.0  # when the server was reached again (wall clock), after an outage
        self._said_no_worker = False
        self._paused_status = ""  # the memo's status when the run last said it paused
        self._task_failure: RunStuckError | None = None  # the last one, until a task completes
        self._stuck = asyncio.Event()

    async def until_paused_or_done(self) -> Paused | AtLimit | dict[str, Any]:
        """The run's output once it ends, or what it waits on: :class:`Paused`, :class:`AtLimit`.

        Raises:
            temporalio.client.WorkflowFailureError: the run failed (or was cancelled...).
            RunStuckError: its workflow task keeps failing.
            TemporalUnreachableError: the server was out of reach for too long.
        """
        poller = asyncio.create_task(self._poll())
        try:
            while True:
                ended = await self._unless_stuck(self._retrying(self._read_history))
                if ended:
                    output: dict[str, Any] = await self._retrying(self.handle.result)
                    return output
                if self._paused_status == "at limit":
                    pause = await self._unless_stuck(self._retrying(self._spending_pause))
                    if pause is not None:
                        return AtLimit(pause)
                    continue
                plan = await self._unless_stuck(self._retrying(self._pending_review))
                if plan is not None:
                    return Paused(plan)
        finally:
            await _cancelled(poller)

    async def _unless_stuck(self, work: Awaitable[T]) -> T:
        """``work``'s value, or :class:`RunStuckError` as soon as the run is found stuck."""
        task = asyncio.ensure_future(work)
        stuck = asyncio.create_task(self._stuck.wait())
        try:
            await asyncio.wait({task, stuck}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stuck.cancel()
            if not task.done():  # stuck, or the watcher is stopped: no call left running
                await _cancelled(task)
        if task.cancelled():
            assert self._task_failure is not None
            raise self._task_failure
        return task.result()

    async def _read_history(self) -> bool:
        """Read new events until the run ends (True) or says it paused (False)."""
        async for event in self.handle.fetch_history_events(wait_new_event=True):
            if event.event_id <= self.tracker.last_event_id:
                continue
            self.tracker.apply(event)
            if _closes_run(event):
                return True
            self._note_task(event)
            if await self._says_paused(event):
                return False
        return True

    async def _says_paused(self, event: HistoryEvent) -> bool:
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
            return False
        fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
        if STATUS not in fields:
            return False
        (status,) = await self.client.data_converter.decode([fields[STATUS]])
        self._paused_status = str(status)
        return status in ("paused", "at limit")

    async def _pending_review(self) -> dict[str, Any] | None:
        """The plan if the run waits for its review now (it may have been answered since)."""
        return await self._paused_on("pending_review")

    async def _spending_pause(self) -> dict[str, Any] | None:
        """The pause if the run waits at a spending limit now (it may have been raised since)."""
        return await self._paused_on("spending_pause")

    async def _paused_on(self, query: str) -> dict[str, Any] | None:
        """What the run waits on, by its ``query`` (None: it goes on).

        A worker answers the query; while none polls the run's task queue (all restarting,
        or none started yet), the watcher says so once and asks again.
        """
        while True:
            try:
                plan: dict[str, Any] | None = await self.handle.query(
                    query, rpc_timeout=QUERY_TIMEOUT
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.FAILED_PRECONDITION:  # "no poller seen"
                    raise
                if not self._said_no_worker:
                    self._said_no_worker = True
                    self.notice(
                        f"waiting for a worker on task queue {self.task_queue!r} to read the "
                        f"run's state (none polls it now; start one with "
                        f"`{self._worker_command()}`)"
                    )
                await asyncio.sleep(POLL_SECONDS)
                continue
            return plan

    def _note_task(self, event: HistoryEvent) -> None:
        """Remember the last workflow task failure, until a workflow task completes."""
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            self._task_failure = None
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            return
        failed = event.workflow_task_failed_event_attributes
        if failed.cause in BENIGN_TASK_FAILURES:
            return
        cause = WorkflowTaskFailedCause.Name(failed.cause).removeprefix(
            "WORKFLOW_TASK_FAILED_CAUSE_"
        )
        message = failure_cause(failed.failure)[:500]
        self._task_failure = RunStuckError(self.handle.id, cause, message, failed.identity)

    async def _poll(self) -> None:
        """Pending attempts, failing and waiting tasks, from the run's description."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                description = await self.handle.describe()
            except RPCError:
                continue  # an outage: the history reader reports it and rides it out
            if self._down_since is not None:
                continue  # back before the history reader knows: it speaks first
            raw = description.raw_description
            self.tracker.pending(list(raw.pending_activities))
            task = raw.pending_workflow_task
            if self._task_failure is not None and raw.HasField("pending_workflow_task"):
                retried = task.attempt > 1
            else:
                retried = False
            if retried:
                self._stuck.set()  # it failed, and fails still: Temporal retries it for ever
            self._check_waiting(raw)

    def _check_waiting(self, raw: Any) -> None:
        now = time.time()
        waiting = [
            a.scheduled_time.ToSeconds()
            for a in raw.pending_activities
            if a.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        ]
        task = raw.pending_workflow_task
        if raw.HasField("pending_workflow_task") and (
            task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED
        ):
            waiting.append(task.scheduled_time.ToSeconds())
        # A task scheduled before an outage has waited since the server came back.
        since = max(min(waiting), self._back_at) if waiting else now
        stalled = now - since > NO_WORKER_NOTICE
        if stalled and not self._said_no_worker:
            self._said_no_worker = True
            needed = raw.workflow_execution_info.versioning_info.deployment_version.build_id
            of = f" of version {needed}" if needed else ""
            start = f"start one with `{self._worker_command()}`"
            if needed and needed != (current := build_id()):
                start = (
                    f"this code is version {current}, whose workers cannot take the run: "
                    f"{start} from the code of version {needed}, or, if that code is gone, "
                    f"move the run to the current version, its finished work reused: "
                    f"`{self._move_command()}` (docs/temporal.md, Upgrades)"
                )
            self.notice(
                f"waiting for a worker{of} on task queue {self.task_queue!r} (none has taken "
                f"the run's next task for {now - since:.0f} s; {start})"
            )
        elif not waiting and self._said_no_worker:
            self._said_no_worker = False
            self.notice("a worker took the run's tasks")

    def _worker_command(self) -> str:
        return f"fanout worker --temporal {self._address}{self._queue_option}"

    def _move_command(self) -> str:
        run = shlex.quote(self.handle.id)
        return f"fanout resume {run} --temporal {self._address}{self._queue_option} --move"

    @property
    def _queue_option(self) -> str:
        queue = self.task_queue
        return "" if queue == DEFAULT_TASK_QUEUE else f" --task-queue {shlex.quote(queue)}"

    @property
    def _address(self) -> str:
        return self.client.service_client.config.target_host

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again and again while the server is out of reach."""
        attempt = 0
        while True:
            try:
                value = await call()
            except RPCError as exc:
                if exc.status not in TRANSIENT:
                    raise
                self._lost(exc)
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                attempt += 1
                continue
            if self._down_since is not None:
                self.notice(
                    f"reached Temporal again after {time.monotonic() - self._down_since:.0f} s"
                )
                self._down_since = None
                self._back_at = time.time()
            return value

    def _lost(self, exc: RPCError) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self.notice(
                f"lost Temporal ({' '.join(exc.message.split())[:160]}); retrying - the run "
                "goes on in Temporal"
            )
        elif now - self._down_since > OUTAGE_LIMIT.total_seconds():
            raise TemporalUnreachableError(
                f"Temporal has been out of reach for {OUTAGE_LIMIT.total_seconds() / 60:.0f} "
                f"minutes ({exc.message}); the run may still be going: check it later with "
                f"`fanout show {self.handle.id} --temporal {self._address}`"
            ) from None


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has stopped.

    A Temporal call left running when the process exits would complete on a Rust thread
    while the interpreter shuts down, and the process would hang there.
    """
    task.cancel()
    await asyncio.wait({task})


def _closes_run(event: HistoryEvent) -> bool:
    return event.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    )
