"""``fanout ... --temporal HOST:PORT``: runs as Temporal workflows, and ``fanout worker``.

Needs the ``[temporal]`` extra; Temporal is imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import time
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from cli.arguments import (
    COMMANDS,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    check_run_models,
    read_value,
    run_context,
)
from cli.output import print_result, stderr
from cli.progress import RunProgress, Task
from cli.runs import WORKFLOWS, RunRecord, Workflow
from state.context import Context

if TYPE_CHECKING:
    from temporalio.client import Client

    from temporal_runs.progress import ActivityState, ActivityTracker

GRACEFUL_SHUTDOWN = timedelta(seconds=5)
"""On SIGTERM, how long a worker lets running activities finish before handing them back."""


def where_to_look(address: str = "HOST:PORT", run_id: str = "THREAD_ID") -> str:
    """How to inspect a Temporal run: the web UI or the ``temporal`` command."""
    return (
        f"the Temporal web UI (the dev server serves it on port 8233), or "
        f"`temporal workflow show --workflow-id {run_id} --address {address}`"
    )


NOT_FOR_TEMPORAL = (
    "`fanout {command}` reads the local checkpoint database; runs started with --temporal are "
    "journaled and resumed by Temporal itself (a live worker finishes them). "
    "Look at them in {where}"
)


async def dispatch(args: argparse.Namespace) -> int:
    """Run a ``--temporal`` command or ``fanout worker``."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise UsageError(
            "--temporal needs the [temporal] extra: pip install 'langgraph-fanout[temporal]'"
        ) from None
    from temporal_runs.client import settle

    try:
        if args.command == "worker":
            return await serve(args)
        if args.command in COMMANDS:
            return await submit(args, WORKFLOWS[COMMANDS[args.command]])
    finally:
        await settle()  # the process exits next
    raise UsageError(
        NOT_FOR_TEMPORAL.format(
            command=args.command,
            where=where_to_look(args.temporal, getattr(args, "thread_id", "THREAD_ID")),
        )
    )


async def _connect(address: str) -> Client:
    from temporal_runs.client import connect

    try:
        return await connect(address)
    except RuntimeError as exc:  # the Rust core's connection error
        raise UsageError(f"cannot connect to Temporal at {address}: {exc}") from None


# --- worker ----------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    """Serve the three workflows and their activities until SIGTERM or Ctrl-C."""
    from temporal_runs.worker import new_worker

    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise UsageError("--max-concurrency must be >= 1")
    log = logging.getLogger("temporal_runs")
    handler = logging.StreamHandler()  # plain lines: cheap, and easy to collect on servers
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    client = await _connect(args.temporal)
    identity = f"{os.getpid()}@{socket.gethostname()}"
    worker = new_worker(
        client,
        args.task_queue,
        max_concurrent_activities=args.max_concurrency,
        identity=identity,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        stderr.print(
            f"worker {identity} on {args.temporal}, task queue {args.task_queue!r}: ready",
            highlight=False,
            markup=False,
        )
        await stop.wait()
        stderr.print("stopping: finishing running activities", highlight=False, markup=False)
    stderr.print("worker stopped", highlight=False, markup=False)
    return EXIT_OK


# --- runs ------------------------------------------------------------------------------------


class TemporalProgress(RunProgress):
    """The CLI's progress view, fed by a run's activities instead of LangGraph callbacks."""

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
        if status == task.status:
            return
        task.status = status
        if status in ("done", "failed", "cancelled"):
            task.finished = now
        if status != "running":
            self._log(task, status + (f" ({task.error[:120]})" if task.error else ""))


async def submit(args: argparse.Namespace, workflow: Workflow) -> int:
    """Start the run as a workflow, show its activities, print its output like a local run."""
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from nodes.models import is_local, resolve_model
    from temporal_runs.client import start_run
    from temporal_runs.progress import ActivityTracker

    value = read_value(workflow, getattr(args, workflow.input_field))
    if args.max_concurrency is not None:
        raise UsageError(
            "--max-concurrency does not apply to --temporal runs: give it to the workers "
            "(fanout worker --max-concurrency N)"
        )
    context = run_context(args, Context())
    # The run keeps the model it was submitted with, whatever the workers' $FANOUT_MODEL says.
    context = replace(context, model=resolve_model(context.model))
    check_run_models(context)
    record = RunRecord.new(workflow, value, context, args.thread)
    client = await _connect(args.temporal)
    try:
        handle = await start_run(
            client,
            workflow.name,
            {workflow.input_field: value},
            context,
            run_id=record.thread_id,
            task_queue=args.task_queue,
        )
    except WorkflowAlreadyStartedError:
        raise UsageError(
            f"thread {record.thread_id!r} already holds a running Temporal run; "
            "pick another --thread"
        ) from None
    stderr.print(f"thread: {record.thread_id}", highlight=False, markup=False)
    model = context.model
    note = " (embedded, demo-grade: weak content, unreliable judgements)" if is_local(model) else ""
    stderr.print(
        f"{workflow.name} on model {model}{note}; Temporal {args.temporal}, "
        f"task queue {args.task_queue!r}",
        highlight=False,
        markup=False,
    )
    progress = TemporalProgress(stderr)
    tracker = ActivityTracker(handle, progress.update)
    try:
        with progress:
            following = asyncio.create_task(tracker.follow())
            try:
                output = await handle.result()
            finally:
                following.cancel()
            await tracker.read_history()
    except asyncio.CancelledError:  # Ctrl-C: the run itself goes on
        stderr.print(
            f"stopped watching; the run goes on. See {where_to_look(args.temporal, handle.id)}",
            highlight=False,
            markup=False,
        )
        raise
    except WorkflowFailureError as exc:
        await tracker.read_history()
        _report_failure(args, handle.id, tracker, exc)
        return EXIT_FAILED
    usage = {"llm_calls": tracker.llm_calls()}
    print_result(args, workflow, record, output, usage)
    return EXIT_OK


def _report_failure(
    args: argparse.Namespace,
    run_id: str,
    tracker: ActivityTracker,
    exc: Exception,
) -> None:
    failed = [t for t in tracker.activities.values() if t.status == "failed"]
    where = ", ".join(t.node + (f" [{t.label}]" if t.label else "") for t in failed)
    cause: Any = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = failed[0].error if failed else str(cause)
    stderr.print(
        f"[bold red]run failed[/] in {escape(where or 'the workflow')}: {escape(text)}",
        highlight=False,
    )
    stderr.print(f"details: {where_to_look(args.temporal, run_id)}", highlight=False, markup=False)
