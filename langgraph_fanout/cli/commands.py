"""The ``fanout`` commands that work on runs, each written once over a :class:`Runtime`."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.markup import escape

from langgraph_fanout.cli.arguments import (
    EXIT_FAILED,
    EXIT_LIMIT,
    EXIT_OK,
    new_run,
    reviewer,
)
from langgraph_fanout.cli.output import (
    print_header,
    print_result,
    print_runs,
    print_shown,
    report_failure,
    report_spending_pause,
    stderr,
)
from langgraph_fanout.cli.review import EXIT_REJECTED, Reviewer, ReviewStopped
from langgraph_fanout.cli.runtime import RunFailed, RunLost, Runtime, SpendingPaused
from langgraph_fanout.persistence.run_records import RunRecord
from langgraph_fanout.run_status import RunStatus
from langgraph_fanout.workflows import WORKFLOWS, Workflow


def say(text: str) -> None:
    """One plain line on stderr."""
    stderr.print(text, highlight=False, markup=False)


async def start(runtime: Runtime, workflow: Workflow) -> int:
    """``fanout article|research|evaluate``: start a run (or attach to ``--thread``'s)."""
    request = runtime.request
    runtime.check()
    value, context = new_run(request, workflow)
    answers = reviewer(request, workflow, context, paused=False)
    record = RunRecord.new(workflow, value, context, request.thread_id)
    payload = {workflow.input_field: value}
    attached = await runtime.start(workflow, record, payload)
    _header(runtime, workflow, record)
    if attached:
        say("attached to the run this thread already holds (no new run started)")
    return await _follow(runtime, workflow, record, None if attached else payload, answers)


async def resume(runtime: Runtime, thread_id: str) -> int:
    """``fanout resume``: go on with a run, answering its review, under raised limits."""
    request = runtime.request
    runtime.check()
    record = await runtime.reopen(await runtime.find(thread_id))
    workflow = WORKFLOWS[record.graph]
    status = await runtime.status(record)
    if status == RunStatus.DONE:
        say("the run already finished: nothing to resume")
    paused = status == RunStatus.PAUSED and not request.move  # a moved run starts again
    answers = reviewer(request, workflow, record.context, paused=paused)
    await runtime.prepare(record)
    _header(runtime, workflow, record)
    return await _follow(runtime, workflow, record, None, answers)


async def show(runtime: Runtime, thread_id: str) -> int:
    """``fanout show``: a run's status, what it waits on, its spending, then its result."""
    record = await runtime.find(thread_id)
    print_shown(await runtime.shown(record), WORKFLOWS[record.graph], runtime.request.json)
    return EXIT_OK


async def runs(runtime: Runtime) -> int:
    """``fanout runs``: the newest runs."""
    rows, where = await runtime.runs(runtime.request.limit)
    print_runs(runtime.request.json, rows, where=where)
    return EXIT_OK


def _header(runtime: Runtime, workflow: Workflow, record: RunRecord) -> None:
    from langgraph_fanout.llm.models import resolve_model

    print_header(workflow, record.thread_id, resolve_model(record.context.model), runtime.where)


async def _follow(
    runtime: Runtime,
    workflow: Workflow,
    record: RunRecord,
    payload: dict[str, Any] | None,
    answers: Reviewer | None,
) -> int:
    """Follow the run to its end and print it; say how to go on where it stops before."""
    thread = record.thread_id
    try:
        finished = await runtime.follow(record, payload, answers)
    except asyncio.CancelledError:  # a stop signal: the run is saved, or goes on elsewhere
        say(runtime.stopped_hint(thread))
        raise
    except SpendingPaused as paused:  # the run waits for a higher limit
        report_spending_pause(paused.pause, runtime.resume_hint(thread, paused.pause))
        return EXIT_LIMIT
    except ReviewStopped as exc:  # the run waits at its plan review
        stderr.print(f"[bold red]paused:[/] {escape(str(exc))}", highlight=False)
        say(runtime.resume_hint(thread))
        return EXIT_FAILED
    except RunFailed as failed:
        report_failure(failed.tasks, failed.cause)
        say(runtime.failure_hint(thread))
        return EXIT_FAILED
    except RunLost as lost:
        stderr.print(f"[bold red]{lost.word}:[/] {escape(lost.message)}", highlight=False)
        if lost.hint:
            say(lost.hint)
        return lost.code
    print_result(runtime.request.json, workflow, record, finished.output, finished.usage)
    rejected = (finished.output.get("review") or {}).get("decision") == "rejected"
    return EXIT_REJECTED if rejected else EXIT_OK
