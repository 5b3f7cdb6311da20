"""``fanout``: run, resume, list and inspect durable runs of the three workflows.

LangGraph, LangChain and the model clients are imported only once the input has passed
validation, so bad usage is reported at once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import TypeAdapter
from rich.logging import RichHandler
from rich.markup import escape

from langgraph_fanout.cli.arguments import (
    EXIT_FAILED,
    EXIT_LIMIT,
    EXIT_OK,
    EXIT_TAKEN_OVER,
    EXIT_USAGE,
    UsageError,
    check_run_models,
    new_run,
    positive_int,
    renamed_node,
    reviewer,
    run_context,
    thread_id,
)
from langgraph_fanout.cli.output import (
    NoticeHandler,
    print_header,
    print_result,
    print_runs,
    print_shown,
    raised_limits,
    report_failure,
    report_spending_pause,
    stderr,
)
from langgraph_fanout.cli.review import EXIT_REJECTED, Reviewer, ReviewStopped
from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.persistence.run_records import RunRecord, find_run, recent_runs, thread_config
from langgraph_fanout.persistence.thread_lock import (
    HeldThread,
    ThreadBusyError,
    ThreadTakenOverError,
    thread_lock,
)
from langgraph_fanout.persistence.urls import (
    DEFAULT_DB,
    DatabaseError,
    db_url,
    exists,
    has_secret,
    redact,
)
from langgraph_fanout.workflows import COMMANDS, WORKFLOWS, Workflow
from state.context import Context
from state.spending import NOTHING_SPENT, counts, is_spending_pause

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

    from langgraph_fanout.cli.progress import RunProgress
    from langgraph_fanout.persistence.batched_writes import BatchedWrites

T = TypeVar("T")
CONTEXT_SCHEMA = TypeAdapter(Context).json_schema()
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a run: Ctrl-C, and what `timeout`, Docker and systemd send."""


class Stopped(Exception):
    """The run was stopped by a signal (finished work is saved)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def build_parser() -> argparse.ArgumentParser:
    """The ``fanout`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", help=f"SQLite path or postgresql:// URL (default: $FANOUT_DB or {DEFAULT_DB})"
    )
    common.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on stdout"
    )
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument(
        "--model",
        default="",
        help="provider:model for every role (default: $FANOUT_MODEL, else "
        "openai:gpt-4.1-mini with OPENAI_API_KEY, else the embedded model)",
    )
    running.add_argument(
        "--max-concurrency", type=positive_int, metavar="N", help="at most N LLM calls at once"
    )
    running.add_argument(
        "--max-tokens", type=int, metavar="N", help="cap on tokens generated per LLM call"
    )
    running.add_argument(
        "--max-llm-calls",
        type=positive_int,
        metavar="N",
        help="pause the run (resumable with a higher limit) rather than start LLM call N+1; "
        "retries count",
    )
    running.add_argument(
        "--max-total-tokens",
        type=positive_int,
        metavar="N",
        help="pause the run (resumable with a higher limit) once its calls used N tokens",
    )
    review = argparse.ArgumentParser(add_help=False)
    review.add_argument(
        "--review",
        action="store_true",
        help="pause after planning: run the plan, edit it in $EDITOR, or reject it",
    )
    review.add_argument(
        "--plan",
        metavar="FILE",
        help="the review's decision, without a prompt (implies --review): a plan, "
        '{"approve": true} or {"reject": true}, as JSON (.json) or YAML',
    )

    def temporal(purpose: str) -> argparse.ArgumentParser:
        """The Temporal options, ``--temporal`` helped as ``purpose`` says."""
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument(
            "--temporal", metavar="HOST:PORT", help=f"{purpose} (needs the [temporal] extra)"
        )
        options.add_argument(
            "--task-queue",
            default="fanout",
            metavar="NAME",
            help="Temporal task queue (%(default)s)",
        )
        return options

    parser = argparse.ArgumentParser(
        prog="fanout", description="Run, resume, list and inspect durable runs of the workflows."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, workflow in COMMANDS.items():
        field = workflow.input_field
        on_temporal = temporal("run on this Temporal server instead of in this process")
        parents = [common, running, on_temporal] + ([review] if workflow.plan else [])
        sub = commands.add_parser(
            command, parents=parents, help=f"run the {workflow.name} workflow"
        )
        sub.add_argument(field, help=f"the {field}, or - to read it from stdin")
        sub.add_argument(
            "--thread", type=thread_id, help="thread id to run under (default: a new one)"
        )
        for setting in workflow.options:
            schema = CONTEXT_SCHEMA["properties"][setting]
            sub.add_argument(
                f"--{setting.replace('_', '-')}",
                type=int,
                help=f"{schema['description']} (default {schema['default']})",
            )
    resume = commands.add_parser(
        "resume",
        parents=[common, running, temporal("the run is on this Temporal server"), review],
        help="finish a crashed, failed or paused run",
    )
    resume.add_argument("thread_id", type=thread_id)
    resume.add_argument(
        "--move",
        action="store_true",
        help="--temporal: start the run again on this code's version, its finished work reused "
        "(for a run whose version's code is gone, or stuck on a nondeterminism error)",
    )
    resume.add_argument(
        "--rename",
        action="append",
        type=renamed_node,
        default=[],
        metavar="OLD=NEW",
        help="with --move: a node renamed since the run started (repeat for each)",
    )
    runs = commands.add_parser(
        "runs",
        parents=[common, temporal("list the runs on this Temporal server")],
        help="list recent runs",
    )
    runs.add_argument("--limit", type=positive_int, default=20)
    show = commands.add_parser(
        "show",
        parents=[common, temporal("the run is on this Temporal server")],
        help="print a run's state",
    )
    show.add_argument("thread_id", type=thread_id)
    worker = commands.add_parser(
        "worker",
        parents=[temporal("the Temporal server to work for")],
        help="run Temporal workflows and activities (--temporal)",
    )
    worker.add_argument(
        "--max-concurrency",
        type=positive_int,
        metavar="N",
        help="at most N LLM calls at once (100)",
    )
    worker.add_argument(
        "--db",
        help="database for payloads too large for Temporal, shared with the clients "
        f"(default: $FANOUT_DB or {DEFAULT_DB})",
    )
    worker.add_argument(
        "--build-id",
        metavar="ID",
        help="this worker's code version (default: a digest of the code and its libraries)",
    )
    worker.add_argument(
        "--no-promote",
        action="store_true",
        help="do not make a new version current (roll out with `temporal worker deployment`)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``fanout`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        handlers=[RichHandler(console=stderr, show_path=False)],
        format="%(message)s",
    )
    notices = logging.getLogger("langgraph_fanout.database")  # lost / back: one plain line each
    notices.addHandler(NoticeHandler())
    notices.propagate = False
    # psycopg warns of each pipeline it could not close on a dropped connection: an outage
    # the notices above already report.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    # A run allocates many short-lived objects per worker; collecting less often saves
    # 20-40% CPU at 1,000 workers (`make bench`).
    gc.set_threshold(10_000, 10, 10)
    try:
        code = asyncio.run(_until_stopped(args))
    except (UsageError, DatabaseError, ThreadBusyError) as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except Stopped as stop:
        code = 128 + stop.signum
    if args.temporal and args.command != "worker":
        leave_now(code)
    sys.exit(code)


def leave_now(code: int) -> None:
    """Exit with ``code`` without the interpreter's shutdown (a Temporal client's way out).

    A call the client cancelled (Ctrl-C while it long-polls the run's history) goes on in
    the Temporal core's Rust threads; if it completes while the interpreter shuts down, pyo3
    parks that thread for good and the shutdown waits for it: `fanout` hung after printing
    its last line (1 of 20 stops under CI load). Nothing is left to save or flush but stdio.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _until_stopped(args: argparse.Namespace) -> int:
    """Run the command; the first stop signal cancels it, the ones after it are ignored.

    The event loop takes the signals, so none interrupts the code that saves and says how to
    resume: with Python's own Ctrl-C handling, a second Ctrl-C raised KeyboardInterrupt
    wherever the code was, the hint unprinted. A signal the process was started ignoring
    (``nohup``, a background job) stays ignored.

    Raises:
        Stopped: a stop signal arrived.
    """
    main_task = asyncio.current_task()
    assert main_task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        if not received:
            main_task.cancel()
        received.append(signum)

    loop = asyncio.get_running_loop()
    handled = [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    for signum in handled:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await _dispatch(args)
    except asyncio.CancelledError:
        if received:
            raise Stopped(received[0]) from None
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
            if received:  # stopping: more Ctrl-C must not cut the exit short either
                signal.signal(signum, signal.SIG_IGN)


async def _dispatch(args: argparse.Namespace) -> int:
    if args.temporal or args.command == "worker":
        if not args.temporal:
            raise UsageError("fanout worker needs --temporal HOST:PORT")
        from langgraph_fanout.cli.temporal import dispatch

        return await dispatch(args)
    if args.command in COMMANDS:
        return await _start(args, COMMANDS[args.command])
    if args.command == "resume":
        return await _resume(args)
    if args.command == "runs":
        return await _list(args)
    return await _show(args)


def _no_run(args: argparse.Namespace, thread_id: str) -> UsageError:
    return UsageError(
        f"no run with thread id {thread_id!r} in {redact(db_url(args.db))} (a run started "
        f"with --temporal is in Temporal: `fanout show {thread_id} --temporal HOST:PORT`)"
    )


async def _start(args: argparse.Namespace, workflow: Workflow) -> int:
    db_url(args.db)  # a malformed URL is refused before the models load (a second of CPU)
    value, context = new_run(args, workflow)
    answers = reviewer(args, workflow, context, paused=False)
    record = RunRecord.new(workflow, value, context, args.thread)
    async with (
        aopen_checkpointer(args.db) as saver,
        thread_lock(args.db, record.thread_id) as held,
    ):
        if args.thread:
            await _check_thread_free(saver, workflow, args.thread)
        payload = {workflow.input_field: value}
        return await _execute(args, saver, held, workflow, record, payload, answers)


async def _check_thread_free(
    saver: BaseCheckpointSaver, workflow: Workflow, thread_id: str
) -> None:
    """Refuse to start on a thread that holds another graph's run or an unfinished one."""
    checkpoint = await saver.aget_tuple(thread_config(thread_id))
    if checkpoint is None:
        return
    record = RunRecord.from_metadata(thread_id, dict(checkpoint.metadata))
    if record is None or record.graph != workflow.name:
        held = f"a {record.graph} run" if record else "a run fanout did not start"
        raise UsageError(f"thread {thread_id!r} already holds {held}; pick another --thread")
    status, _ = await _status(workflow.compile(saver), thread_id)
    if status != "done":
        raise UsageError(
            f"thread {thread_id!r} holds an unfinished {workflow.name} run ({status}); "
            f"finish it with `fanout resume {thread_id}` or pick another --thread"
        )


@asynccontextmanager
async def _existing_run(
    args: argparse.Namespace,
) -> AsyncIterator[tuple[BatchedWrites, RunRecord]]:
    """The open database and the record of the run ``args.thread_id`` (else exit 2)."""
    if not exists(args.db):
        raise _no_run(args, args.thread_id)
    async with aopen_checkpointer(args.db) as saver:
        record = await find_run(saver, args.thread_id)
        if record is None:
            raise await _not_ours(saver, args)
        yield saver, record


async def _not_ours(saver: BaseCheckpointSaver, args: argparse.Namespace) -> UsageError:
    """Why ``args.thread_id`` holds no fanout run: no such thread, or another tool's."""
    checkpoint = await saver.aget_tuple(thread_config(args.thread_id))
    if checkpoint is None:
        return _no_run(args, args.thread_id)
    graph = checkpoint.metadata.get("graph_id")
    made_by = f"a {graph} run made through the server API" if graph else "a run of another tool"
    return UsageError(
        f"thread {args.thread_id!r} holds {made_by}; read or continue it where it was started "
        f"(for the langgraph dev server: GET /threads/{args.thread_id}/state)"
    )


async def _resume(args: argparse.Namespace) -> int:
    if args.move or args.rename:
        raise UsageError("--move and --rename move a Temporal run: add --temporal HOST:PORT")
    async with (
        _existing_run(args) as (saver, record),
        thread_lock(args.db, record.thread_id) as held,
    ):
        record = replace(record, context=run_context(args, record.context))
        check_run_models(record.context)
        workflow = WORKFLOWS[record.graph]
        status = (await _status(workflow.compile(saver), record.thread_id))[0]
        if status == "done":
            stderr.print("the run already finished: nothing to resume", highlight=False)
        answers = reviewer(args, workflow, record.context, paused=status == "paused")
        return await _execute(args, saver, held, workflow, record, None, answers)


async def _execute(
    args: argparse.Namespace,
    saver: BatchedWrites,
    held: HeldThread,
    workflow: Workflow,
    record: RunRecord,
    payload: dict[str, Any] | None,
    reviewer: Reviewer | None = None,
) -> int:
    """Run (``payload``) or resume (None) ``record``'s graph, persisting to ``saver``."""
    from langgraph_fanout.cli.progress import RunProgress
    from langgraph_fanout.cli.stream import SpendingPaused, run_graph
    from langgraph_fanout.llm.call import with_admission
    from langgraph_fanout.llm.models import resolve_model

    print_header(workflow, record.thread_id, resolve_model(record.context.model))
    progress = RunProgress(stderr, durable=True)
    saver.saved_listeners.append(progress.saved)  # "done" once a task's result is committed
    graph = workflow.compile(saver)
    config = held.fenced(record.config([progress], args.max_concurrency))
    config = with_admission(config, held.admit)  # calls start only while the thread is ours
    try:
        output = await _while_held(
            held, run_graph(graph, payload, config, record.context, progress, reviewer)
        )
    except ThreadTakenOverError as exc:  # the lock was lost and another process took the thread
        stderr.print(f"[bold red]stopped:[/] {escape(str(exc))}", highlight=False)
        stderr.print(_show_hint(args, record), highlight=False, markup=False)
        return EXIT_TAKEN_OVER
    except asyncio.CancelledError:  # Ctrl-C
        stderr.print(f"interrupted; {_resume_hint(args, record)}", highlight=False, markup=False)
        raise
    except SpendingPaused as paused:  # a spending limit: the run waits for a higher one
        report_spending_pause(paused.pause, _resume_hint(args, record, paused.pause))
        return EXIT_LIMIT
    except ReviewStopped as exc:  # the run is paused at its plan review
        stderr.print(f"[bold red]paused:[/] {escape(str(exc))}", highlight=False)
        stderr.print(_resume_hint(args, record), highlight=False, markup=False)
        return EXIT_FAILED
    except Exception as exc:  # the run failed: say where and how to resume
        _report_failure(args, record, progress, exc)
        return EXIT_FAILED
    print_result(args, workflow, record, output, progress.usage())
    return EXIT_REJECTED if (output.get("review") or {}).get("decision") == "rejected" else EXIT_OK


async def _while_held(held: HeldThread, work: Coroutine[Any, Any, T]) -> T:
    """``work``, stopped at once if another process takes the thread.

    Raises:
        ThreadTakenOverError: it did (nothing of this process reaches the thread after it).
    """
    task = asyncio.ensure_future(work)
    held.lost.add_done_callback(lambda _: task.cancel())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if held.lost.done() and current is not None and not current.cancelling():
            raise held.lost.result() from None
        raise


def _show_hint(args: argparse.Namespace, record: RunRecord) -> str:
    db = f" --db {shlex.quote(redact(args.db))}" if args.db else ""
    thread = shlex.quote(record.thread_id)
    return f"the thread's run goes on there; see it with: fanout show {thread}{db}"


def _resume_hint(
    args: argparse.Namespace, record: RunRecord, pause: dict[str, Any] | None = None
) -> str:
    thread = shlex.quote(record.thread_id) + (raised_limits(pause) if pause else "")
    if args.db and has_secret(args.db):  # never print an unusable *** URL
        return (
            f'finished work is saved; resume with: fanout resume {thread} --db "$FANOUT_DB" '
            f"(with FANOUT_DB set to the URL of {redact(args.db)}, password included)"
        )
    db = f" --db {shlex.quote(args.db)}" if args.db else ""
    return f"finished work is saved; resume with: fanout resume {thread}{db}"


def _report_failure(
    args: argparse.Namespace, record: RunRecord, progress: RunProgress, exc: Exception
) -> None:
    failed = [(t.node, t.label, t.error) for t in progress.failed()]
    report_failure(failed, f"{type(exc).__name__}: {exc}")
    stderr.print(_resume_hint(args, record), highlight=False, markup=False)


async def _status(
    graph: CompiledStateGraph[Any, Context, Any, Any], thread_id: str
) -> tuple[str, Any]:
    snapshot = await graph.aget_state(thread_config(thread_id))
    if not snapshot.next and not snapshot.tasks:
        return "done", snapshot
    if snapshot.interrupts:
        if is_spending_pause(snapshot.interrupts[0].value):
            return "at limit", snapshot  # waiting to be resumed with a higher one
        return "paused", snapshot  # waiting for its plan review
    # Tasks but no next step: the run broke off between two steps (it saved no step since).
    failed = not snapshot.next or any(t.error for t in snapshot.tasks)
    return ("failed" if failed else "incomplete"), snapshot


async def _list(args: argparse.Namespace) -> int:
    rows: list[dict[str, str]] = []
    if exists(args.db):
        async with aopen_checkpointer(args.db) as saver:
            graphs = {name: w.compile(saver) for name, w in WORKFLOWS.items()}
            rows = [
                {
                    "thread_id": r.thread_id,
                    "graph": r.graph,
                    "status": (await _status(graphs[r.graph], r.thread_id))[0],
                    "started": r.started,
                    "door": r.door,
                    "input": r.input_head,
                }
                for r in await recent_runs(saver, args.limit)
            ]
    print_runs(args, rows, where=redact(db_url(args.db)))
    return EXIT_OK


async def _show(args: argparse.Namespace) -> int:
    async with _existing_run(args) as (saver, record):
        status, snapshot = await _status(WORKFLOWS[record.graph].compile(saver), record.thread_id)
    shown = {
        "thread_id": record.thread_id,
        "graph": record.graph,
        "status": status,
        "started": record.started,
        "door": record.door,
        "next": list(snapshot.next),
        "pending": [
            {"node": t.name, "error": t.error} for t in snapshot.tasks if t.error or not t.result
        ],
        "review": [  # the plan a run paused at its review shows
            i.value for i in snapshot.interrupts if not is_spending_pause(i.value)
        ],
        "spent": counts(snapshot.values.get("spent", NOTHING_SPENT)),
        "limits": record.context.limits_set(),
        "values": snapshot.values,
    }
    print_shown(shown, WORKFLOWS[record.graph], args.json)
    return EXIT_OK
