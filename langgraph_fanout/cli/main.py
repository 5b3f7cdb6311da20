"""``fanout``: run, resume, list and inspect durable runs of the workflows.

LangGraph, LangChain and the model clients are imported only once the input has passed
validation, so bad usage is reported at once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence

from pydantic import TypeAdapter
from rich.logging import RichHandler
from rich.markup import escape

from langgraph_fanout.cli import commands
from langgraph_fanout.cli.arguments import (
    EXIT_USAGE,
    UsageError,
    positive_int,
    renamed_node,
    thread_id,
)
from langgraph_fanout.cli.local import InProcess
from langgraph_fanout.cli.output import NoticeHandler, stderr
from langgraph_fanout.cli.request import Request
from langgraph_fanout.cli.runtime import Runtime
from langgraph_fanout.persistence.thread_lock import ThreadBusyError
from langgraph_fanout.persistence.urls import DEFAULT_DB, DatabaseError
from langgraph_fanout.temporal import DEFAULT_TASK_QUEUE
from langgraph_fanout.workflows import COMMANDS, WORKFLOWS
from state.context import Context

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

    def common(json: str) -> argparse.ArgumentParser:
        """``--db``, and ``--json`` helped as ``json`` says."""
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument(
            "--db",
            help=f"SQLite path or postgresql:// URL (default: $FANOUT_DB or {DEFAULT_DB}); "
            "with --temporal, where payloads too large for Temporal are kept",
        )
        options.add_argument("--json", action="store_true", help=json)
        return options

    result = common("print the result as one JSON object on stdout")

    def running(resuming: bool) -> argparse.ArgumentParser:
        """A run's settings; on ``resume``, what changes from there on (in this process)."""
        options = argparse.ArgumentParser(add_help=False)
        kept = " from now on (default: the run's own; a Temporal run keeps its own)"
        options.add_argument(
            "--model",
            default="",
            help="provider:model for every role"
            + (
                kept
                if resuming
                else " (default: $FANOUT_MODEL, else openai:gpt-4.1-mini with OPENAI_API_KEY, "
                "else the embedded model)"
            ),
        )
        options.add_argument(
            "--max-concurrency",
            type=positive_int,
            metavar="N",
            help="at most N LLM calls at once in this process (on Temporal: fanout worker's "
            "option)",
        )
        options.add_argument(
            "--max-tokens",
            type=int,
            metavar="N",
            help="cap on tokens generated per LLM call" + (kept if resuming else ""),
        )
        options.add_argument(
            "--max-llm-calls",
            type=positive_int,
            metavar="N",
            help="pause the run (resumable with a higher limit) rather than start LLM call N+1; "
            "retries count",
        )
        options.add_argument(
            "--max-total-tokens",
            type=positive_int,
            metavar="N",
            help="pause the run (resumable with a higher limit) once its calls used N tokens",
        )
        return options

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

    def temporal(purpose: str, queue: str | None = None) -> argparse.ArgumentParser:
        """``--temporal`` helped as ``purpose`` says; ``--task-queue`` as ``queue`` (if any)."""
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument(
            "--temporal", metavar="HOST:PORT", help=f"{purpose} (needs the [temporal] extra)"
        )
        if queue:
            options.add_argument(
                "--task-queue",
                default=DEFAULT_TASK_QUEUE,
                metavar="NAME",
                help=queue,
            )
        return options

    parser = argparse.ArgumentParser(
        prog="fanout", description="Run, resume, list and inspect durable runs of the workflows."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, workflow in COMMANDS.items():
        field = workflow.input_field
        on_temporal = temporal(
            "run on this Temporal server instead of in this process",
            "the Temporal task queue its workers poll (%(default)s)",
        )
        parents = [result, running(False), on_temporal] + ([review] if workflow.plan else [])
        sub = commands.add_parser(
            command, parents=parents, help=f"run the {workflow.name} workflow"
        )
        sub.add_argument("value", metavar=field, help=f"the {field}, or - to read it from stdin")
        sub.add_argument(
            "--thread",
            dest="thread_id",
            type=thread_id,
            help="thread id to run under (default: a new one)",
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
        parents=[
            result,
            running(True),
            temporal(
                "the run is on this Temporal server",
                "the Temporal task queue its workers poll, named in the hints (%(default)s)",
            ),
            review,
        ],
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
        dest="renames",
        action="append",
        type=renamed_node,
        default=[],
        metavar="OLD=NEW",
        help="with --move: a node renamed since the run started (repeat for each)",
    )
    runs = commands.add_parser(
        "runs",
        parents=[
            common("print the runs as one JSON list on stdout"),
            temporal(
                "list the runs on this Temporal server",
                "taken for the other commands' sake: runs of every task queue are listed",
            ),
        ],
        help="list recent runs",
    )
    runs.add_argument(
        "--limit",
        type=positive_int,
        default=20,
        metavar="N",
        help="the newest N runs (%(default)s)",
    )
    show = commands.add_parser(
        "show",
        parents=[
            common("print the run's whole state as one JSON object on stdout"),
            temporal(
                "the run is on this Temporal server",
                "taken for the other commands' sake: the thread id finds the run",
            ),
        ],
        help="print a run's status, what it waits on, its spending and its result",
    )
    show.add_argument("thread_id", type=thread_id)
    worker = commands.add_parser(
        "worker",
        parents=[
            temporal(
                "the Temporal server to work for", "the Temporal task queue to poll (%(default)s)"
            )
        ],
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
        dest="promote",
        action="store_false",
        help="do not make a new version current (roll out with `temporal worker deployment`)",
    )
    return parser


SETTINGS = frozenset(setting for w in WORKFLOWS.values() for setting in w.options)
"""The workflows' own settings, each an option of its workflow's command."""


def request_from(args: argparse.Namespace) -> Request:
    """The parsed command line as a :class:`Request`: the one place argparse's result is read."""
    given = dict(vars(args))
    settings = {name: given.pop(name) for name in SETTINGS & given.keys()}
    given["renames"] = dict(given.get("renames", ()))
    return Request(**given, settings={k: v for k, v in settings.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``fanout`` console script."""
    request = request_from(build_parser().parse_args(argv))
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
        code = asyncio.run(_until_stopped(request))
    except (UsageError, DatabaseError, ThreadBusyError) as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except Stopped as stop:
        code = 128 + stop.signum
    if request.temporal and request.command != "worker":
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


async def _until_stopped(request: Request) -> int:
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
        return await _dispatch(request)
    except asyncio.CancelledError:
        if received:
            raise Stopped(received[0]) from None
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
            if received:  # stopping: more Ctrl-C must not cut the exit short either
                signal.signal(signum, signal.SIG_IGN)


async def _dispatch(request: Request) -> int:
    if request.temporal or request.command == "worker":
        from langgraph_fanout.cli.temporal import OnTemporal, require_temporal

        if not request.temporal:
            raise UsageError("fanout worker needs --temporal HOST:PORT")
        require_temporal()
        if request.command == "worker":
            from langgraph_fanout.cli.worker import serve

            return await serve(request)
        runtime: Runtime = OnTemporal(request)
    else:
        runtime = InProcess(request)
    async with runtime:
        if request.command in COMMANDS:
            return await commands.start(runtime, COMMANDS[request.command])
        if request.command == "runs":
            return await commands.runs(runtime)
        assert request.thread_id is not None  # resume and show name it
        if request.command == "resume":
            return await commands.resume(runtime, request.thread_id)
        return await commands.show(runtime, request.thread_id)
