"""The runtime that runs graphs as Temporal workflows (``fanout ... --temporal HOST:PORT``).

A run's thread id is its workflow id: starting a run on a thread that holds one attaches to
it. The command watches the run (``langgraph_fanout.temporal.watch``) and answers its plan
review; the run itself goes on in Temporal whatever happens to the command. Needs the
``[temporal]`` extra; Temporal is imported only when one of these commands runs.
"""

from __future__ import annotations

import logging
import shlex
import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from langgraph_fanout.cli.arguments import EXIT_FAILED, UsageError
from langgraph_fanout.cli.output import raised_limits, stderr
from langgraph_fanout.cli.progress import RunProgress, Task
from langgraph_fanout.cli.request import Request
from langgraph_fanout.cli.review import Reviewer, ReviewStopped
from langgraph_fanout.cli.runtime import Finished, RunFailed, RunLost, Runtime, SpendingPaused
from langgraph_fanout.persistence.run_records import RunRecord
from langgraph_fanout.run_status import RunStatus
from langgraph_fanout.workflows import COMMANDS, WORKFLOWS, Workflow
from state.context import ConfigurationError, Context

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from langgraph_fanout.temporal.progress import ActivityState

DOOR = "temporal"
"""The door ``fanout runs`` names for Temporal runs."""


def require_temporal() -> None:
    """Refuse a ``--temporal`` command without the ``[temporal]`` extra.

    Raises:
        UsageError: Temporal's SDK is not installed.
    """
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise UsageError(
            "--temporal needs the [temporal] extra: pip install 'langgraph-fanout[temporal]'"
        ) from None


async def connect(request: Request) -> Client:
    """A client of ``--temporal``'s server, large payloads kept in ``--db``.

    Raises:
        UsageError: the server cannot be reached.
    """
    from langgraph_fanout.temporal.client import connect

    assert request.temporal is not None
    try:
        return await connect(request.temporal, db=request.db)
    except RuntimeError as exc:  # the Rust core's connection error
        raise UsageError(f"cannot connect to Temporal at {request.temporal}: {exc}") from None


def root_cause(exc: BaseException) -> str:
    """The innermost cause of a Temporal error (the node's own, past Temporal's wrappers)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)


class OnTemporal(Runtime):
    """Runs on the Temporal server ``--temporal`` names (see the module)."""

    _client: Client | None = None
    _handle: WorkflowHandle[Any, Any] | None = None

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        assert request.temporal is not None
        self.address = request.temporal
        self.where = f"; Temporal {self.address}, task queue {request.task_queue!r}"

    async def __aenter__(self) -> OnTemporal:
        from langgraph_fanout.temporal.client import settle

        logging.getLogger("temporalio").setLevel(logging.ERROR)  # the CLI says it lost the server
        await super().__aenter__()
        self.resources.push_async_callback(settle)  # the process exits next
        return self

    def check(self) -> None:
        """Refuse what a Temporal run does not take from the command line."""
        request = self.request
        if request.command in COMMANDS and request.max_concurrency is not None:
            raise UsageError(
                "--max-concurrency does not apply to --temporal runs: give it to the workers "
                "(fanout worker --max-concurrency N)"
            )
        if request.command != "resume":
            return
        if request.renames and not request.move:
            raise UsageError("--rename goes with --move")
        if request.move and request.sets_limits:
            raise UsageError("a run under spending limits is not moved: drop --max-llm-calls")
        if request.model or request.max_tokens is not None:
            raise UsageError("a Temporal run keeps the settings it started with")

    async def client(self) -> Client:
        """The Temporal client, connected on first use."""
        if self._client is None:
            self._client = await connect(self.request)
        return self._client

    @property
    def handle(self) -> WorkflowHandle[Any, Any]:
        """The run :meth:`start` or :meth:`find` found."""
        assert self._handle is not None, "start or find names the run first"
        return self._handle

    async def start(self, workflow: Workflow, record: RunRecord, payload: dict[str, Any]) -> bool:
        """Start the workflow, or attach to the run of the same input and settings."""
        from langgraph_fanout.temporal.client import RunConflictError, is_run, start_run

        client = await self.client()
        known = self.request.thread_id is not None and await is_run(client, record.thread_id)
        try:
            self._handle = await start_run(
                client,
                workflow.name,
                payload,
                record.context,
                run_id=record.thread_id,
                task_queue=self.request.task_queue,
            )
        except RunConflictError as exc:
            raise UsageError(f"thread {record.thread_id!r} holds another run: {exc}") from None
        except ConfigurationError as exc:  # limits a Temporal run cannot keep: nothing started
            raise UsageError(str(exc)) from None
        return known

    async def find(self, thread_id: str) -> RunRecord:
        """What the run was started with, from its history's first event."""
        from temporalio.service import RPCError, RPCStatusCode

        from langgraph_fanout.temporal.client import input_head, request_of

        client = await self.client()
        handle = client.get_workflow_handle(thread_id)
        try:
            started = await request_of(client, handle)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise UsageError(
                    f"no Temporal run with thread id {thread_id!r} on {self.address}"
                ) from None
            raise
        self._handle = handle
        return RunRecord(
            thread_id=thread_id,
            graph=started.graph,
            input_head=input_head(started.request.input),
            started=started.started,
            context=Context.of(started.request.context),
            door=DOOR,
        )

    async def status(self, record: RunRecord) -> RunStatus:
        """From the run's description and memo."""
        from langgraph_fanout.temporal.client import status_of

        return await status_of(self.handle)

    async def reopen(self, record: RunRecord) -> RunRecord:
        """The run as it started: its settings are its own (:meth:`check`)."""
        return record

    async def prepare(self, record: RunRecord) -> None:
        """``--move`` the run to this code's version; raise its limits as the command line says."""
        if self.request.move:
            await self._move()
        if self.request.sets_limits:
            await self._raise_limits()

    async def _move(self) -> None:
        from langgraph_fanout.temporal.moves import MoveRefusedError, move_run
        from langgraph_fanout.temporal.versioning import build_id

        try:
            move = await move_run(await self.client(), self.handle.id, dict(self.request.renames))
        except MoveRefusedError as exc:
            raise UsageError(str(exc)) from None
        stderr.print(
            f"moved to the current version (this code's is {build_id()}): {move.reused} "
            f"finished activities reused ({move.reused_calls} LLM calls not made again); the "
            "rest runs there",
            highlight=False,
            markup=False,
        )
        self._handle = move.handle

    async def _raise_limits(self) -> None:
        """Give the run the command line's limits (exit 2 if it refuses them)."""
        from temporalio.client import WorkflowUpdateFailedError
        from temporalio.service import RPCError

        from langgraph_fanout.temporal.client import raise_limits, refusal

        limits = Context(
            max_llm_calls=self.request.max_llm_calls,
            max_total_tokens=self.request.max_total_tokens,
        )
        try:
            await raise_limits(self.handle, limits)
        except WorkflowUpdateFailedError as exc:
            raise UsageError(f"the run refused the limits: {refusal(exc)}") from None
        except RPCError as exc:  # it ended: nothing to raise the limits of
            raise UsageError(f"the run took no limits: {exc.message}") from None

    async def follow(
        self, record: RunRecord, payload: dict[str, Any] | None, reviewer: Reviewer | None
    ) -> Finished:
        """Watch the run to its end, answering its plan review."""
        from temporalio.client import WorkflowFailureError

        from langgraph_fanout.temporal.watch import (
            AtLimit,
            Paused,
            RunStuckError,
            RunWatcher,
            TemporalUnreachableError,
        )

        client, handle = await self.client(), self.handle
        progress = TemporalProgress(stderr)
        watcher = RunWatcher(
            client,
            handle,
            self.request.task_queue,
            listener=progress.update,
            notice=progress.notice,
        )
        plan = WORKFLOWS[record.graph].plan
        review_node = plan.review_node if plan else "review"
        try:
            while True:
                with progress:
                    ended = await watcher.until_paused_or_done()
                if isinstance(ended, AtLimit):
                    raise SpendingPaused(ended.pause)
                if not isinstance(ended, Paused):
                    break
                progress.review(review_node, "paused")
                await _review(handle, reviewer, ended.plan)
                progress.review(review_node, "done")
        except (RunStuckError, TemporalUnreachableError) as exc:
            raise RunLost("error", str(exc), "", EXIT_FAILED) from exc
        except WorkflowFailureError as exc:
            failed = [
                (t.node, t.label, t.error)
                for t in watcher.tracker.activities.values()
                if t.status == "failed"
            ]
            raise RunFailed(failed, root_cause(exc)) from exc
        return Finished(ended, await watcher.tracker.usage(client.data_converter))

    async def shown(self, record: RunRecord) -> dict[str, Any]:
        """Status, the activities not done, the plan it waits on, its output once done, usage."""
        from temporalio.client import WorkflowFailureError

        from langgraph_fanout.temporal.progress import ActivityTracker

        client, handle = await self.client(), self.handle
        status = await self.status(record)
        tracker = ActivityTracker()
        async for event in handle.fetch_history_events():
            tracker.apply(event)
        shown: dict[str, Any] = {
            "thread_id": record.thread_id,
            "graph": record.graph,
            "status": status,
            "started": record.started,
            "pending": [
                {"node": a.node, "label": a.label, "status": a.status, "error": a.error}
                for a in tracker.activities.values()
                if a.status not in ("done", "cancelled")
            ],
            "review": [],
            "values": {},
            "usage": await tracker.usage(client.data_converter),
        }
        if status == RunStatus.PAUSED:
            shown["review"] = [await handle.query("pending_review")]
        elif status == RunStatus.DONE:
            shown["values"] = await handle.result()
        elif status == RunStatus.FAILED:
            try:
                await handle.result()
            except WorkflowFailureError as exc:
                shown["error"] = root_cause(exc)
        return shown

    async def runs(self, limit: int) -> tuple[list[dict[str, str]], str]:
        """The newest runs of the workflows on the server."""
        from langgraph_fanout.temporal.client import list_runs

        rows = [
            {
                "thread_id": r.thread_id,
                "graph": r.graph,
                "status": r.status,
                "started": r.started,
                "door": DOOR,
                "input": r.input,
            }
            for r in await list_runs(await self.client(), limit)
        ]
        return rows, f"Temporal at {self.address}"

    def _resume_command(self, thread_id: str) -> str:
        from langgraph_fanout.temporal.watch import fanout_command

        return fanout_command(
            f"resume {shlex.quote(thread_id)}", self.address, self.request.task_queue
        )

    def resume_hint(self, thread_id: str, pause: dict[str, Any] | None = None) -> str:
        """The command that follows the run again (answering its review, past its limit)."""
        command = self._resume_command(thread_id) + (raised_limits(pause) if pause else "")
        return f"the run waits in Temporal; go on: {command}"

    def stopped_hint(self, thread_id: str) -> str:
        """The run goes on in Temporal: how to follow it again."""
        return (
            f"stopped watching; the run goes on in Temporal: `{self._resume_command(thread_id)}` "
            "follows it again"
        )

    def failure_hint(self, thread_id: str) -> str:
        """Its history (true whether or not the server has a web UI)."""
        return (
            f"details: `temporal workflow show --workflow-id {thread_id} --address {self.address}`"
        )


async def _review(
    handle: WorkflowHandle[Any, Any], reviewer: Reviewer | None, plan: dict[str, Any]
) -> None:
    """Ask ``reviewer`` about ``plan`` until the run takes a decision.

    Raises:
        ReviewStopped: nobody to ask, or no decision.
    """
    from temporalio.client import WorkflowUpdateFailedError

    from langgraph_fanout.cli.stream import ask
    from langgraph_fanout.temporal.client import refusal, review_run

    if reviewer is None:
        raise ReviewStopped("the run paused for a plan review, which this command cannot answer")
    request = plan
    while True:
        decision = await ask(reviewer, request)
        try:
            await review_run(handle, decision)
            return
        except WorkflowUpdateFailedError as exc:
            request = {**plan, "error": refusal(exc)}


class TemporalProgress(RunProgress):
    """The CLI's progress view, fed by a run's activities instead of LangGraph callbacks."""

    _reviews = 0

    def update(self, activity: ActivityState) -> None:
        """Show ``activity``'s new state (a scheduled activity shows as running)."""
        now = time.monotonic()
        status = "running" if activity.status == "scheduled" else activity.status
        task = self.tasks.get(activity.key)
        if task is None:
            task = Task(node=activity.node, label=activity.label, started=now)
            self.tasks[activity.key] = task
            self._log(task, "started")
        new_attempt = activity.attempt > task.attempts
        task.attempts = max(task.attempts, activity.attempt)
        task.error = activity.error
        if new_attempt and status == "running":
            if task.status != "retrying" and task.error:  # no look saw it waiting: say why
                self._set(task, "retrying")
            self._log(task, f"attempt {task.attempts}")
        self._set(task, status)

    def review(self, node: str, status: str) -> None:
        """Show the plan review (a step inside the workflow): ``paused``, then ``done``."""
        if status == "paused":
            self._reviews += 1
            task = Task(node=node, label="", started=time.monotonic())
            self.tasks[f"review-{self._reviews}"] = task
            self._log(task, "started")
        self._set(self.tasks[f"review-{self._reviews}"], status)

    def notice(self, text: str) -> None:
        """A line about the run as a whole (waiting for a worker, a lost server)."""
        self.console.print(f"[bold]note:[/] {escape(text)}", highlight=False)

    def _set(self, task: Task, status: str) -> None:
        if status == task.status:
            return
        task.status = status
        if status in ("done", "failed", "cancelled", "paused"):
            task.finished = time.monotonic()
        if status != "running":
            self._log(task, status + (f" ({task.error[:120]})" if task.error else ""))
