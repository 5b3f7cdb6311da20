"""``fanout ... --temporal HOST:PORT``: runs as Temporal workflows, and ``fanout worker``.

Every command works on Temporal runs as it does on local ones: start a run (or attach to the
one its ``--thread`` names), review its plan, ``resume`` (attach, answer a pending review),
``show`` and ``runs``. Needs the ``[temporal]`` extra; Temporal is imported only when one of
these commands runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import socket
import sys
import time
import types
import warnings
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from langgraph_fanout.cli.arguments import (
    EXIT_FAILED,
    EXIT_LIMIT,
    EXIT_OK,
    UsageError,
    new_run,
    reviewer,
)
from langgraph_fanout.cli.output import (
    print_header,
    print_result,
    print_runs,
    print_shown,
    raised_limits,
    report_failure,
    report_spending_pause,
    stderr,
)
from langgraph_fanout.cli.progress import RunProgress, Task
from langgraph_fanout.cli.review import EXIT_REJECTED, Reviewer, ReviewStopped
from langgraph_fanout.persistence.run_records import RunRecord
from langgraph_fanout.workflows import COMMANDS, WORKFLOWS, Workflow
from state.context import ConfigurationError, Context

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from langgraph_fanout.temporal.client import StartedRun
    from langgraph_fanout.temporal.progress import ActivityState
    from langgraph_fanout.temporal.watch import RunWatcher

GRACEFUL_SHUTDOWN = timedelta(seconds=5)
"""On SIGTERM, how long a worker lets running activities finish before handing them back."""


def where_to_look(address: str, run_id: str) -> str:
    """How to inspect a Temporal run (true whether or not the server has a web UI)."""
    return f"`temporal workflow show --workflow-id {run_id} --address {address}`"


async def dispatch(args: argparse.Namespace) -> int:
    """Run a ``--temporal`` command or ``fanout worker``."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise UsageError(
            "--temporal needs the [temporal] extra: pip install 'langgraph-fanout[temporal]'"
        ) from None
    from langgraph_fanout.temporal.client import settle

    if args.command != "worker":  # the CLI says itself when it loses the server
        logging.getLogger("temporalio").setLevel(logging.ERROR)
    try:
        if args.command == "worker":
            return await serve(args)
        if args.command in COMMANDS:
            return await submit(args, COMMANDS[args.command])
        if args.command == "resume":
            return await resume(args)
        if args.command == "show":
            return await show(args)
        return await list_runs(args)
    finally:
        await settle()  # the process exits next


async def _connect(args: argparse.Namespace) -> Client:
    from langgraph_fanout.temporal.client import connect

    try:
        return await connect(args.temporal, db=args.db)
    except RuntimeError as exc:  # the Rust core's connection error
        raise UsageError(f"cannot connect to Temporal at {args.temporal}: {exc}") from None


# --- worker ----------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    """Serve the three workflows and their activities until SIGTERM or Ctrl-C."""
    from langgraph_fanout.temporal.versioning import build_id
    from langgraph_fanout.temporal.worker import serving

    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("langgraph_fanout.temporal").setLevel(logging.INFO)
    client = await _connect(args)
    identity = f"{os.getpid()}@{socket.gethostname()}"
    build = args.build_id or build_id()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serving(
        client,
        args.task_queue,
        build=build,
        promote=not args.no_promote,
        max_concurrent_activities=args.max_concurrency,
        identity=identity,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    ) as (_, promotion):
        stderr.print(
            f"worker {identity} on {args.temporal}, task queue {args.task_queue!r}, "
            f"version {build} ({promotion.note}): ready",
            highlight=False,
            markup=False,
        )
        await stop.wait()
        stderr.print("stopping: finishing running activities", highlight=False, markup=False)
    stderr.print("worker stopped", highlight=False, markup=False)
    drop_evicted_workflows()
    return EXIT_OK


def drop_evicted_workflows() -> None:
    """Let the workflows the stopped worker dropped die silently as the process exits.

    At shutdown the SDK drops the runs it had cached without resuming them; their LangGraph
    coroutines and generators are then finalized by the garbage collector, with no event
    loop to run their cleanup in, and each printed a traceback ("Exception ignored in ...
    no running event loop"). The runs go on from their histories on other workers: nothing
    of them lives in this process. Any other unraisable error is still printed.
    """
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.object, types.CoroutineType | types.AsyncGeneratorType):
            sys.__unraisablehook__(unraisable)

    sys.unraisablehook = hook


class OneLineFormatter(logging.Formatter):
    """A worker's log: one plain line per message, as log collectors count them.

    The Temporal core's warnings (a lost server, retried polls) span lines, and Rich would
    wrap them further; a traceback still follows its line, but for a cancellation: an attempt
    the server gave up on (its heartbeats came late on a loaded machine) is cancelled on the
    worker, which the SDK logs with the cancelled call's whole stack.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line; a cancellation's traceback as its one-line cause."""
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            error = record.exc_info[1]
            record = logging.makeLogRecord(
                {**record.__dict__, "exc_info": None, "exc_text": None}
                | {"msg": f"{record.getMessage()}: {type(error).__name__}: {error}", "args": ()}
            )
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The message with every run of whitespace, line breaks included, as one space."""
        return " ".join(super().formatMessage(record).split())


# --- runs ------------------------------------------------------------------------------------


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


def _header(args: argparse.Namespace, workflow: Workflow, run_id: str, model: str) -> None:
    where = f"; Temporal {args.temporal}, task queue {args.task_queue!r}"
    print_header(workflow, run_id, model, where)


async def submit(args: argparse.Namespace, workflow: Workflow) -> int:
    """Start the run as a workflow (or attach to ``--thread``'s), follow it, print its output."""
    from langgraph_fanout.temporal.client import RunConflictError, start_run

    if args.max_concurrency is not None:
        raise UsageError(
            "--max-concurrency does not apply to --temporal runs: give it to the workers "
            "(fanout worker --max-concurrency N)"
        )
    value, context = new_run(args, workflow)
    answers = reviewer(args, workflow, context, paused=False)
    record = RunRecord.new(workflow, value, context, args.thread)
    client = await _connect(args)
    known = args.thread is not None and await _exists(client, record.thread_id)
    try:
        handle = await start_run(
            client,
            workflow.name,
            {workflow.input_field: value},
            context,
            run_id=record.thread_id,
            task_queue=args.task_queue,
        )
    except RunConflictError as exc:
        raise UsageError(f"thread {record.thread_id!r} holds another run: {exc}") from None
    except ConfigurationError as exc:  # limits a Temporal run cannot keep: nothing submitted
        raise UsageError(str(exc)) from None
    _header(args, workflow, record.thread_id, context.model)
    if known:
        stderr.print(
            "attached to the run this thread already holds (no new run started)",
            highlight=False,
            markup=False,
        )
    return await _follow(args, client, handle, workflow, record, answers)


async def resume(args: argparse.Namespace) -> int:
    """Attach to a Temporal run: follow it, answer its plan review, print its output.

    ``--move``: start it again on this code's version first, its finished work reused.
    ``--max-llm-calls`` / ``--max-total-tokens``: raise its limits (a run paused at one goes on).
    """
    if args.rename and not args.move:
        raise UsageError("--rename goes with --move")
    if args.move and (args.max_llm_calls is not None or args.max_total_tokens is not None):
        raise UsageError("a run under spending limits is not moved: drop --max-llm-calls")
    client = await _connect(args)
    handle = client.get_workflow_handle(args.thread_id)
    started = await _started(client, handle, args)
    workflow = WORKFLOWS[started.graph]
    context = Context.of(started.request.context)
    if args.model or args.max_tokens is not None:
        raise UsageError("a Temporal run keeps the settings it started with")
    paused = not args.move and await _status(client, handle) == "paused"
    answers = reviewer(args, workflow, context, paused=paused)  # every refusal before a move
    if args.move:
        handle = await _move(client, args)
    if args.max_llm_calls is not None or args.max_total_tokens is not None:
        await _raise_limits(handle, args)
    value = next(iter(started.request.input.values()), "")
    record = RunRecord.new(workflow, str(value), context, args.thread_id)
    _header(args, workflow, args.thread_id, context.model)
    return await _follow(args, client, handle, workflow, record, answers)


async def _raise_limits(handle: WorkflowHandle[Any, Any], args: argparse.Namespace) -> None:
    """Give the run the spending limits of the command line (exit 2 if it refuses them)."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from langgraph_fanout.temporal.client import raise_limits

    limits = Context(max_llm_calls=args.max_llm_calls, max_total_tokens=args.max_total_tokens)
    try:
        await raise_limits(handle, limits)
    except WorkflowUpdateFailedError as exc:
        cause = getattr(exc.cause, "message", None) or exc.cause or exc
        raise UsageError(f"the run refused the limits: {cause}") from None
    except RPCError as exc:  # it ended: nothing to raise the limits of
        raise UsageError(f"the run took no limits: {exc.message}") from None


async def _move(client: Client, args: argparse.Namespace) -> WorkflowHandle[Any, Any]:
    """Start the run again on this code's version, its finished activities reused."""
    from langgraph_fanout.temporal.moves import MoveRefusedError, move_run
    from langgraph_fanout.temporal.versioning import build_id

    try:
        move = await move_run(client, args.thread_id, dict(args.rename))
    except MoveRefusedError as exc:
        raise UsageError(str(exc)) from None
    stderr.print(
        f"moved to the current version (this code's is {build_id()}): {move.reused} finished "
        f"activities reused ({move.reused_calls} LLM calls not made again); the rest runs there",
        highlight=False,
        markup=False,
    )
    return move.handle


async def _started(
    client: Client, handle: WorkflowHandle[Any, Any], args: argparse.Namespace
) -> StartedRun:
    """What the run ``args.thread_id`` was started with (else exit 2: no such run)."""
    from temporalio.service import RPCError, RPCStatusCode

    from langgraph_fanout.temporal.client import request_of

    try:
        return await request_of(client, handle)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(
                f"no Temporal run with thread id {args.thread_id!r} on {args.temporal}"
            ) from None
        raise


async def _exists(client: Client, run_id: str) -> bool:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        await client.get_workflow_handle(run_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _follow(
    args: argparse.Namespace,
    client: Client,
    handle: WorkflowHandle[Any, Any],
    workflow: Workflow,
    record: RunRecord,
    reviewer: Reviewer | None,
) -> int:
    """Follow the run to its end, answering its plan review; print it like a local run."""
    from temporalio.client import WorkflowFailureError

    from langgraph_fanout.temporal.watch import (
        AtLimit,
        Paused,
        RunStuckError,
        RunWatcher,
        TemporalUnreachableError,
    )

    progress = TemporalProgress(stderr)
    watcher = RunWatcher(
        client, handle, args.task_queue, listener=progress.update, notice=progress.notice
    )
    review_node = workflow.plan.review_node if workflow.plan else "review"
    try:
        while True:
            with progress:
                ended = await watcher.until_paused_or_done()
            if isinstance(ended, AtLimit):
                command = _resume_command(args, handle.id) + raised_limits(ended.pause)
                report_spending_pause(ended.pause, f"the run waits in Temporal; go on: {command}")
                return EXIT_LIMIT
            if not isinstance(ended, Paused):
                break
            progress.review(review_node, "paused")
            await _review(handle, reviewer, ended.plan)
            progress.review(review_node, "done")
    except asyncio.CancelledError:  # Ctrl-C: the run itself goes on
        stderr.print(
            f"stopped watching; the run goes on in Temporal: `{_resume_command(args, handle.id)}` "
            "follows it again",
            highlight=False,
            markup=False,
        )
        raise
    except ReviewStopped as exc:
        stderr.print(f"[bold red]paused:[/] {escape(str(exc))}", highlight=False)
        stderr.print(
            f"the run waits in Temporal; answer it with `fanout resume {handle.id} "
            f"--temporal {args.temporal}`",
            highlight=False,
            markup=False,
        )
        return EXIT_FAILED
    except (RunStuckError, TemporalUnreachableError) as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_FAILED
    except WorkflowFailureError as exc:
        _report_failure(args, handle.id, watcher, exc)
        return EXIT_FAILED
    usage = await watcher.tracker.usage(client.data_converter)
    print_result(args, workflow, record, ended, usage)
    review = ended.get("review") or {}
    return EXIT_REJECTED if review.get("decision") == "rejected" else EXIT_OK


def _resume_command(args: argparse.Namespace, run_id: str) -> str:
    """The command that follows (and answers) Temporal run ``run_id`` again."""
    from langgraph_fanout.temporal.worker import DEFAULT_TASK_QUEUE

    queue = "" if args.task_queue == DEFAULT_TASK_QUEUE else f" --task-queue {args.task_queue}"
    return f"fanout resume {shlex.quote(run_id)} --temporal {args.temporal}{queue}"


async def _review(
    handle: WorkflowHandle[Any, Any], reviewer: Reviewer | None, plan: dict[str, Any]
) -> None:
    """Ask ``reviewer`` about ``plan`` until the run takes a decision.

    Raises:
        ReviewStopped: nobody to ask, or no decision.
    """
    from temporalio.client import WorkflowUpdateFailedError

    from langgraph_fanout.cli.stream import ask
    from langgraph_fanout.temporal.client import review_run

    if reviewer is None:
        raise ReviewStopped("the run paused for a plan review, which this command cannot answer")
    request = plan
    while True:
        decision = await ask(reviewer, request)
        try:
            await review_run(handle, decision)
            return
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            request = {**plan, "error": str(getattr(cause, "message", None) or cause or exc)}


def _report_failure(
    args: argparse.Namespace, run_id: str, watcher: RunWatcher, exc: Exception
) -> None:
    failed = [
        (t.node, t.label, t.error)
        for t in watcher.tracker.activities.values()
        if t.status == "failed"
    ]
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    report_failure(failed, str(cause))
    stderr.print(f"details: {where_to_look(args.temporal, run_id)}", highlight=False, markup=False)


# --- show, runs ------------------------------------------------------------------------------


async def _status(client: Client, handle: WorkflowHandle[Any, Any]) -> str:
    from temporalio.client import WorkflowExecutionStatus

    from langgraph_fanout.temporal.client import STATUSES
    from langgraph_fanout.temporal.workflows import STATUS

    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.RUNNING:
        return str((await description.memo()).get(STATUS, "running"))
    return STATUSES.get(description.status, "unknown") if description.status else "unknown"


async def show(args: argparse.Namespace) -> int:
    """Print a Temporal run: status, the plan it waits on, its output once done, its usage."""
    from temporalio.client import WorkflowFailureError

    from langgraph_fanout.temporal.progress import ActivityTracker

    client = await _connect(args)
    handle = client.get_workflow_handle(args.thread_id)
    started = await _started(client, handle, args)
    description = await handle.describe()
    status = await _status(client, handle)
    tracker = ActivityTracker()
    async for event in handle.fetch_history_events():
        tracker.apply(event)
    shown: dict[str, Any] = {
        "thread_id": args.thread_id,
        "graph": started.graph,
        "status": status,
        "started": description.start_time.isoformat(timespec="seconds"),
        "pending": [
            {"node": a.node, "label": a.label, "status": a.status, "error": a.error}
            for a in tracker.activities.values()
            if a.status not in ("done", "cancelled")
        ],
        "review": [],
        "values": {},
        "usage": await tracker.usage(client.data_converter),
    }
    if status == "paused":
        shown["review"] = [await handle.query("pending_review")]
    elif status == "done":
        shown["values"] = await handle.result()
    elif status == "failed":
        try:
            await handle.result()
        except WorkflowFailureError as exc:
            cause: Any = exc
            while cause.__cause__ is not None:
                cause = cause.__cause__
            shown["error"] = str(cause)
    print_shown(shown, WORKFLOWS[started.graph], args.json)
    return EXIT_OK


async def list_runs(args: argparse.Namespace) -> int:
    """List recent Temporal runs of the three graphs, newest first."""
    from langgraph_fanout.temporal.client import list_runs as recent

    client = await _connect(args)
    rows = [
        {
            "thread_id": r.thread_id,
            "graph": r.graph,
            "status": r.status,
            "started": r.started,
            "door": "temporal",
            "input": r.input,
        }
        for r in await recent(client, args.limit)
    ]
    print_runs(args, rows, where=f"Temporal at {args.temporal}")
    return EXIT_OK
