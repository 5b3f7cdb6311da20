"""Follow one run in Temporal until it pauses or ends, whatever happens on the way.

A :class:`RunWatcher` long-polls the run's history (each read waits on the server for the
next event) and, while the run has a task open, reads its description for what the history
does not hold (attempts of activities in flight, tasks no worker has taken): at once after
the history moves, less and less often while it does not. It turns them into what a person
or a script needs to know:

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
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    wait_exponential,
    wait_fixed,
)

from langgraph_fanout.temporal import DEFAULT_TASK_QUEUE
from langgraph_fanout.temporal.progress import (
    FINISHED,
    ActivityTracker,
    Listener,
    failure_cause,
)
from langgraph_fanout.temporal.versioning import build_id
from langgraph_fanout.temporal.workflows import STATUS

T = TypeVar("T")

LOOK_SECONDS = (0.5, 2.0)
"""The least and the most time between two reads of the run's description: the least right
after the history moved, doubling while it does not."""
QUERY_RETRY_SECONDS = 0.5
"""How often a query no worker can answer yet is asked again."""
NO_WORKER_NOTICE = 5.0
"""Seconds a task may wait unclaimed before the watcher says it waits for a worker."""
QUERY_TIMEOUT = timedelta(seconds=10)
"""How long a query (a paused run's plan) may wait for a worker to answer it."""
OUTAGE_LIMIT = timedelta(minutes=10)
"""How long the watcher keeps trying to reach an unreachable Temporal server."""
BACKOFF = wait_exponential(multiplier=0.25, max=4.0)
"""Seconds between attempts to reach it again: 0.25, 0.5, 1, 2, then 4 each."""
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
        self._task_open = False  # the history's last workflow task has not completed
        self._moved = asyncio.Event()  # the history has new events since the last look
        self._stuck = asyncio.Event()

    async def until_paused_or_done(self) -> Paused | AtLimit | dict[str, Any]:
        """The run's output once it ends, or what it waits on: :class:`Paused`, :class:`AtLimit`.

        Raises:
            temporalio.client.WorkflowFailureError: the run failed (or was cancelled...).
            RunStuckError: its workflow task keeps failing.
            TemporalUnreachableError: the server was out of reach for too long.
        """
        looker = asyncio.create_task(self._look())
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
            await _cancelled(looker)

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
            self._moved.set()
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
        asking = AsyncRetrying(
            retry=retry_if_exception(_no_poller),
            wait=wait_fixed(QUERY_RETRY_SECONDS),
            before_sleep=self._no_reader,
            reraise=True,
        )
        plan: dict[str, Any] | None = await asking(
            self.handle.query, query, rpc_timeout=QUERY_TIMEOUT
        )
        return plan

    def _no_reader(self, state: RetryCallState) -> None:
        if not self._said_no_worker:
            self._said_no_worker = True
            self.notice(
                f"waiting for a worker on task queue {self.task_queue!r} to read the run's "
                f"state (none polls it now; start one with `{self._worker_command()}`)"
            )

    def _note_task(self, event: HistoryEvent) -> None:
        """Follow the workflow tasks: open or not, the last failure until one completes."""
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and self._said_no_worker:
            self._said_no_worker = False
            self.notice("a worker took the run's tasks")
        if kind in WORKFLOW_TASK_EVENTS:
            # A failed or timed-out task is scheduled again, outside the history.
            self._task_open = kind != EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            self._task_failure = None
        if kind != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            return
        failed = event.workflow_task_failed_event_attributes
        if failed.cause in BENIGN_TASK_FAILURES:
            return
        cause = WorkflowTaskFailedCause.Name(failed.cause).removeprefix(
            "WORKFLOW_TASK_FAILED_CAUSE_"
        )
        message = failure_cause(failed.failure)[:500]
        self._task_failure = RunStuckError(self.handle.id, cause, message, failed.identity)

    def _has_open_task(self) -> bool:
        """Whether a workflow task or an activity of the run has not ended, by its history."""
        activities = self.tracker.activities.values()
        return self._task_open or any(a.status not in FINISHED for a in activities)

    async def _look(self) -> None:
        """Pending attempts, failing and waiting tasks, from the run's description.

        Read while the run has a task open: right after the history moved (at most every
        ``LOOK_SECONDS[0]``), then at doubling intervals up to ``LOOK_SECONDS[1]``.
        """
        shortest, longest = LOOK_SECONDS
        wait = shortest
        while True:
            await asyncio.sleep(shortest)
            if not self._has_open_task():
                await self._moved.wait()
            moved = self._moved.is_set()  # wait_for(..., 0) would not see it (Python 3.11)
            if not moved:
                try:
                    await asyncio.wait_for(self._moved.wait(), wait - shortest)
                    moved = True
                except TimeoutError:
                    pass
            wait = shortest if moved else min(2 * wait, longest)
            self._moved.clear()
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
                if task.attempt > 1:  # it failed, and fails still: Temporal retries it for ever
                    self._stuck.set()
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
        return fanout_command("worker", self._address, self.task_queue)

    def _move_command(self) -> str:
        resume = f"resume {shlex.quote(self.handle.id)}"
        return fanout_command(resume, self._address, self.task_queue) + " --move"

    @property
    def _address(self) -> str:
        return self.client.service_client.config.target_host

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again and again while the server is out of reach.

        Raises:
            TemporalUnreachableError: it was out of reach for :data:`OUTAGE_LIMIT`.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            wait=BACKOFF,
            stop=self._down_too_long,
            before_sleep=self._lost,
        )
        try:
            value: T = await retrying(call)
        except RetryError as gave_up:
            error = gave_up.last_attempt.exception()
            reason = error.message if isinstance(error, RPCError) else str(error)
            raise TemporalUnreachableError(
                f"Temporal has been out of reach for {OUTAGE_LIMIT.total_seconds() / 60:.0f} "
                f"minutes ({reason}); the run may still be going: check it later with "
                f"`fanout show {self.handle.id} --temporal {self._address}`"
            ) from None
        if self._down_since is not None:
            self.notice(f"reached Temporal again after {time.monotonic() - self._down_since:.0f} s")
            self._down_since = None
            self._back_at = time.time()
        return value

    def _down_too_long(self, state: RetryCallState) -> bool:
        down = self._down_since
        return down is not None and time.monotonic() - down > OUTAGE_LIMIT.total_seconds()

    def _lost(self, state: RetryCallState) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            error = state.outcome.exception() if state.outcome else None
            message = error.message if isinstance(error, RPCError) else str(error)
            self.notice(
                f"lost Temporal ({' '.join(message.split())[:160]}); retrying - the run goes "
                "on in Temporal"
            )


def fanout_command(words: str, address: str, task_queue: str) -> str:
    """``fanout WORDS`` on Temporal at ``address`` and ``task_queue`` (named if not the default)."""
    queue = "" if task_queue == DEFAULT_TASK_QUEUE else f" --task-queue {shlex.quote(task_queue)}"
    return f"fanout {words} --temporal {address}{queue}"


def _transient(error: BaseException) -> bool:
    return isinstance(error, RPCError) and error.status in TRANSIENT


def _no_poller(error: BaseException) -> bool:
    return isinstance(error, RPCError) and error.status == RPCStatusCode.FAILED_PRECONDITION


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has stopped.

    A Temporal call left running when the process exits would complete on a Rust thread
    while the interpreter shuts down, and the process would hang there.
    """
    task.cancel()
    await asyncio.wait({task})


WORKFLOW_TASK_EVENTS = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    }
)


def _closes_run(event: HistoryEvent) -> bool:
    return event.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    )
