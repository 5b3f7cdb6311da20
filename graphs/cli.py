"""``fanout``: run, resume, list and inspect durable runs of the three workflows."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from graphs.checkpointer import DEFAULT_DB, aopen_checkpointer, db_url
from graphs.progress import RunProgress
from graphs.workflows import WORKFLOWS, RunRecord, Workflow, find_run, recent_runs
from nodes.models import is_local, resolve_model
from state.context import DEFAULT_MAX_SECTIONS, Context
from state.inputs import InvalidInputError, parse_input

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COMMANDS = {"evaluate": "evaluation", "article": "article", "research": "research"}

stderr = Console(stderr=True, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


class UsageError(Exception):
    """Bad usage or bad input: exit 2, nothing persisted."""


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
        "--max-concurrency", type=int, metavar="N", help="at most N LLM calls at once"
    )

    parser = argparse.ArgumentParser(prog="fanout", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command, graph in COMMANDS.items():
        field = WORKFLOWS[graph].input_field
        sub = commands.add_parser(
            command, parents=[common, running], help=f"run the {graph} workflow"
        )
        sub.add_argument(field, help=f"the {field}, or - to read it from stdin")
        sub.add_argument("--thread", help="thread id to run under (default: a new one)")
        if graph == "article":
            sub.add_argument(
                "--max-sections",
                type=int,
                default=DEFAULT_MAX_SECTIONS,
                help="cap on planned sections (default %(default)s)",
            )
    resume = commands.add_parser(
        "resume", parents=[common, running], help="finish a crashed or failed run"
    )
    resume.add_argument("thread_id")
    runs = commands.add_parser("runs", parents=[common], help="list recent runs")
    runs.add_argument("--limit", type=int, default=20)
    show = commands.add_parser("show", parents=[common], help="print a run's state")
    show.add_argument("thread_id")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``fanout`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        handlers=[RichHandler(console=stderr, show_path=False)],
        format="%(message)s",
    )
    try:
        code = asyncio.run(_dispatch(args))
    except UsageError as exc:
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command in COMMANDS:
        return await _start(args, WORKFLOWS[COMMANDS[args.command]])
    if args.command == "resume":
        return await _resume(args)
    if args.command == "runs":
        return await _list(args)
    return await _show(args)


def _read_value(workflow: Workflow, raw: str) -> str:
    value = sys.stdin.read() if raw == "-" else raw
    try:
        return getattr(
            parse_input(workflow.input_model, {workflow.input_field: value}), workflow.input_field
        )
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None


def _context(args: argparse.Namespace, base: Context) -> Context:
    try:
        context = replace(base, model=args.model or base.model)
        if getattr(args, "max_sections", None) is not None:
            context = replace(context, max_sections=args.max_sections)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise UsageError("--max-concurrency must be >= 1")
    return context


async def _start(args: argparse.Namespace, workflow: Workflow) -> int:
    value = _read_value(workflow, getattr(args, workflow.input_field))
    record = RunRecord.new(workflow, value, _context(args, Context()), args.thread)
    return await _execute(args, workflow, record, {workflow.input_field: value})


async def _resume(args: argparse.Namespace) -> int:
    async with aopen_checkpointer(args.db) as saver:
        record = await find_run(saver, args.thread_id)
    if record is None:
        raise UsageError(f"no run with thread id {args.thread_id!r} in {db_url(args.db)}")
    record = replace(record, context=_context(args, record.context))
    return await _execute(args, WORKFLOWS[record.graph], record, None)


async def _execute(
    args: argparse.Namespace, workflow: Workflow, record: RunRecord, payload: dict[str, Any] | None
) -> int:
    stderr.print(f"thread: {record.thread_id}", highlight=False)
    model = resolve_model(record.context.model)
    note = " (embedded, demo-grade: weak content, unreliable judgements)" if is_local(model) else ""
    stderr.print(f"{workflow.name} on model {model}{note}", highlight=False)
    progress = RunProgress(stderr)
    async with aopen_checkpointer(args.db) as saver:
        graph = workflow.compile(saver)
        config = record.config([progress], args.max_concurrency)
        try:
            with progress:
                output = await graph.ainvoke(
                    payload, config, context=record.context, durability="async"
                )
        except Exception as exc:  # the run failed: say where and how to resume
            _report_failure(args, record, progress, exc)
            return EXIT_FAILED
    _print_result(args, workflow, record, output, progress.usage())
    return EXIT_OK


def _report_failure(
    args: argparse.Namespace, record: RunRecord, progress: RunProgress, exc: Exception
) -> None:
    failed = progress.failed()
    where = ", ".join(f"{t.node}" + (f" [{t.label}]" if t.label else "") for t in failed)
    cause = failed[0].error if failed else f"{type(exc).__name__}: {exc}"
    db = f" --db {args.db}" if args.db else ""
    stderr.print(f"[bold red]run failed[/] in {where or 'the graph'}: {cause}", highlight=False)
    stderr.print(
        f"finished work is saved; resume with: fanout resume {record.thread_id}{db}",
        highlight=False,
    )


def _print_result(
    args: argparse.Namespace,
    workflow: Workflow,
    record: RunRecord,
    output: dict[str, Any],
    usage: dict[str, Any],
) -> None:
    stderr.print(
        f"done: {usage['llm_calls']} LLM calls, "
        f"{usage['input_tokens']} input + {usage['output_tokens']} output tokens",
        highlight=False,
    )
    if args.json:
        print(
            json.dumps(
                {"thread_id": record.thread_id, **output, "usage": usage}, ensure_ascii=False
            )
        )
    elif workflow.name == "evaluation":
        verdict = "appropriate" if output["is_appropriate"] else "NOT appropriate"
        stdout.print(
            f"{verdict} ({output['votes']}/{len(output['evaluations'])} evaluators vote "
            f"appropriate)\n{output['summary']}\n"
        )
        for e in output["evaluations"]:
            stdout.print(
                f"- {e['evaluator']}: {'yes' if e['is_appropriate'] else 'no'} - {e['explanation']}"
            )
    elif workflow.name == "article":
        stdout.print(output["article"])
    else:
        stdout.print(f"{output['report']}\n\n({output['task_count']} research questions)")


async def _status(
    graph: CompiledStateGraph[Any, Context, Any, Any], thread_id: str
) -> tuple[str, Any]:
    snapshot = await graph.aget_state(RunnableConfig(configurable={"thread_id": thread_id}))
    if not snapshot.next:
        return "done", snapshot
    return ("failed" if any(t.error for t in snapshot.tasks) else "incomplete"), snapshot


async def _list(args: argparse.Namespace) -> int:
    async with aopen_checkpointer(args.db) as saver:
        graphs = {name: w.compile(saver) for name, w in WORKFLOWS.items()}
        rows = [
            (r, (await _status(graphs[r.graph], r.thread_id))[0])
            for r in await recent_runs(saver, args.limit)
        ]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "thread_id": r.thread_id,
                        "graph": r.graph,
                        "status": s,
                        "started": r.started,
                        "input": r.input_head,
                    }
                    for r, s in rows
                ]
            )
        )
        return EXIT_OK
    table = Table("thread", "graph", "status", "started", "input")
    for r, s in rows:
        table.add_row(r.thread_id, r.graph, s, r.started, r.input_head)
    stdout.print(table)
    return EXIT_OK


async def _show(args: argparse.Namespace) -> int:
    async with aopen_checkpointer(args.db) as saver:
        record = await find_run(saver, args.thread_id)
        if record is None:
            raise UsageError(f"no run with thread id {args.thread_id!r} in {db_url(args.db)}")
        status, snapshot = await _status(WORKFLOWS[record.graph].compile(saver), record.thread_id)
    shown = {
        "thread_id": record.thread_id,
        "graph": record.graph,
        "status": status,
        "started": record.started,
        "next": list(snapshot.next),
        "pending": [
            {"node": t.name, "error": t.error} for t in snapshot.tasks if t.error or not t.result
        ],
        "values": snapshot.values,
    }
    print(json.dumps(shown, indent=None if args.json else 2, ensure_ascii=False, default=str))
    return EXIT_OK
