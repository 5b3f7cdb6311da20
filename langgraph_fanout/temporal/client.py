"""Start, follow, answer and list graph runs on Temporal.

A run's id (its thread id) is its workflow id: starting a run under an id that already holds
one attaches to it instead of starting a second one. Library logs of Temporal's client go
to Python's logging (the ``temporalio`` logger), never to stdout.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from langgraph.types import Command, Interrupt
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError, RPCStatusCode

from langgraph_fanout.run_status import RunStatus
from langgraph_fanout.temporal import DEFAULT_TASK_QUEUE
from langgraph_fanout.temporal.payloads import check_written_size, data_converter
from langgraph_fanout.temporal.spending import check_temporal_limits
from langgraph_fanout.temporal.watch import AtLimit, Paused, RunWatcher
from langgraph_fanout.temporal.workflows import STATUS, RunRequest
from langgraph_fanout.workflows import WORKFLOWS
from state.context import Context
from state.review import Review

SETTLE_SECONDS = 0.02
INPUT_HEAD_CHARS = 60


class RunConflictError(Exception):
    """The run id holds a run of another graph or input."""


async def settle() -> None:
    """Let Temporal's client threads finish handing back their last replies.

    The Rust thread that completes a call's future lets go of the GIL midway (asyncio's
    wake-up write); if the interpreter starts shutting down before that thread gets the GIL
    back, the process aborts with "PyGILState_Release: thread state ... must be current"
    (temporalio/sdk-python issue 300). Blocking a moment hands it the GIL. Await this
    after a client's last call when the process exits soon after.
    """
    await asyncio.sleep(SETTLE_SECONDS)


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """Temporal's runtime with its core's log lines sent to the ``temporalio`` logger.

    By default the core writes its warnings (a lost connection, retried calls) to stdout,
    where they would mix with a ``--json`` result.
    """
    global _runtime
    if _runtime is None:
        logs = LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
        _runtime = Runtime(telemetry=TelemetryConfig(logging=logs))
    return _runtime


async def connect(address: str, *, db: str | None = None) -> Client:
    """A client of the Temporal server at ``address`` (``HOST:PORT``).

    ``db``: the database large payloads are kept in (``langgraph_fanout.temporal.payloads``; default
    $FANOUT_DB, else the default SQLite file), the same one the workers use.

    Namespace, TLS and API key come from Temporal's own client settings, as for the
    ``temporal`` CLI: ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*`` or a
    profile in ``temporal.toml`` (``TEMPORAL_PROFILE``); without any, namespace ``default``
    over plain TCP (a dev server).
    """
    settings = ClientConfig.load_client_connect_config()
    settings["target_host"] = address
    return await Client.connect(**settings, data_converter=data_converter(db), runtime=runtime())


def input_head(graph_input: dict[str, Any]) -> str:
    """The start of a run's input, on one line, as ``fanout runs`` lists it."""
    value = next(iter(graph_input.values()), "")
    return " ".join(str(value).split())[:INPUT_HEAD_CHARS]


async def start_run(
    client: Client,
    graph: str,
    graph_input: dict[str, Any],
    context: Context | None = None,
    *,
    run_id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> WorkflowHandle[Any, dict[str, Any]]:
    """Start ``graph`` (``evaluation``, ``article`` or ``research``) as a workflow.

    ``run_id`` (the thread id, a new UUID when None) becomes the workflow id. Any live
    worker on ``task_queue`` picks the run up; it survives the death of any of them. When
    ``run_id`` already holds a run of ``graph`` on the same input, running or finished, its
    handle is returned and nothing new starts (if it has the same settings).

    Raises:
        RunConflictError: ``run_id`` holds a run of another graph, input or settings.
        ConfigurationError: spending limits a Temporal run cannot keep
            (:func:`~langgraph_fanout.temporal.spending.check_temporal_limits`), or sections
            that may be too large (:func:`~langgraph_fanout.temporal.payloads.check_written_size`).
    """
    if graph not in WORKFLOWS:
        raise ValueError(f"unknown graph {graph!r}; expected one of {sorted(WORKFLOWS)}")
    check_temporal_limits(context or Context())
    if "max_sections" in WORKFLOWS[graph].options:
        check_written_size(context or Context())
    request = RunRequest(input=graph_input, context=asdict(context or Context()))
    run_id = run_id or str(uuid.uuid4())
    try:
        handle: WorkflowHandle[Any, dict[str, Any]] = await client.start_workflow(
            graph,  # the workflow type
            request,
            id=run_id,
            task_queue=task_queue,
            result_type=dict,
            memo={"graph": graph, "input": input_head(graph_input), STATUS: "running"},
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # running: attach
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,  # finished: attach
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(run_id, result_type=dict)
    started = await request_of(client, handle)
    if started.graph != graph or started.request.input != graph_input:
        raise RunConflictError(
            f"run {run_id!r} is a {started.graph} run on "
            f"{input_head(started.request.input)!r}: pick another id"
        )
    settings = {
        name: value
        for name, value in started.request.context.items()
        if request.context.get(name) != value
    }
    if settings:
        raise RunConflictError(
            f"run {run_id!r} was started with other settings "
            f"({', '.join(f'{name}={value!r}' for name, value in sorted(settings.items()))}): "
            "attach with the same settings, or pick another id"
        )
    return handle


@dataclass(frozen=True)
class StartedRun:
    """What a run was started with: its graph and request, and when (ISO 8601, UTC)."""

    graph: str
    request: RunRequest
    started: str


async def request_of(client: Client, handle: WorkflowHandle[Any, Any]) -> StartedRun:
    """The graph and request a run was started with (its history's first event)."""
    async for event in handle.fetch_history_events(page_size=1):
        started = event.workflow_execution_started_event_attributes
        (request,) = await client.data_converter.decode(started.input.payloads, [RunRequest])
        when = _iso(event.event_time.ToDatetime(tzinfo=UTC))
        return StartedRun(started.workflow_type.name, request, when)
    raise RunConflictError(f"run {handle.id!r} has no history")


async def is_run(client: Client, run_id: str) -> bool:
    """Whether ``run_id`` names a run on the server."""
    try:
        await client.get_workflow_handle(run_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def review_run(handle: WorkflowHandle[Any, Any], decision: Any) -> Review:
    """Answer a paused run's plan review with ``decision`` (a plan, approve or reject).

    Raises:
        temporalio.client.WorkflowUpdateFailedError: the run refused it; the message says why
            (an invalid decision, or no review pending). The run stays as it was.
    """
    review: Review = await handle.execute_update("review", decision, result_type=dict)
    return review


async def raise_limits(handle: WorkflowHandle[Any, Any], context: Context) -> None:
    """Give a run the spending limits ``context`` sets; a run paused at one goes on.

    Raises:
        temporalio.client.WorkflowUpdateFailedError: the run refused them (the message says
            why).
    """
    await handle.execute_update("raise_limits", context.limits_set(), result_type=dict)


async def run_graph(
    client: Client,
    graph: str,
    graph_input: dict[str, Any] | Command,
    context: Context | None = None,
    *,
    run_id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> dict[str, Any]:
    """Run ``graph`` on Temporal and wait, like ``graph.ainvoke`` in this process.

    Returns the graph's output; or, for a run that pauses at its plan review
    (``Context(review_plan=True)``), ``{"__interrupt__": [Interrupt(value=plan)]}``. Answer it
    with ``run_graph(client, graph, Command(resume=decision), run_id=...)``: an invalid
    decision returns the pause again with the plan's ``"error"`` saying why. A run that
    pauses at a spending limit returns its pause the same way; ``Command(resume=True)`` with a
    ``context`` of raised limits goes on.

    Raises:
        temporalio.client.WorkflowFailureError: the run failed.
        langgraph_fanout.temporal.watch.RunStuckError: its workflow task keeps failing (for
            instance a worker of other code took it); the run is kept in Temporal.
    """
    try:
        if isinstance(graph_input, Command):
            if run_id is None:
                raise ValueError("answering a review needs the run_id of the paused run")
            handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(run_id)
            try:
                if await handle.query("spending_pause") is not None:
                    if context is None or not context.has_limits():
                        raise ValueError("a run at its spending limit goes on with higher ones")
                    await raise_limits(handle, context)
                else:
                    await review_run(handle, graph_input.resume)
            except WorkflowUpdateFailedError as exc:
                plan = await handle.query("pending_review")
                if plan is None:
                    raise
                return {"__interrupt__": [Interrupt(value={**plan, "error": refusal(exc)})]}
        else:
            handle = await start_run(
                client, graph, graph_input, context, run_id=run_id, task_queue=task_queue
            )
        ended = await RunWatcher(client, handle, task_queue).until_paused_or_done()
        if isinstance(ended, Paused):
            return {"__interrupt__": [Interrupt(value=ended.plan)]}
        if isinstance(ended, AtLimit):
            return {"__interrupt__": [Interrupt(value=ended.pause)]}
        return ended
    finally:
        await settle()


def refusal(exc: WorkflowUpdateFailedError) -> str:
    """The reason a run gave for refusing an update."""
    cause = exc.cause
    return str(getattr(cause, "message", None) or cause or exc)


@dataclass(frozen=True)
class RunSummary:
    """One run as ``fanout runs --temporal`` lists it."""

    thread_id: str
    graph: str
    status: RunStatus
    started: str
    input: str


CLOSED = {
    WorkflowExecutionStatus.COMPLETED: RunStatus.DONE,
    WorkflowExecutionStatus.FAILED: RunStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: RunStatus.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: RunStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT: RunStatus.TIMED_OUT,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: RunStatus.CONTINUED,
}
"""The status of a run that has ended, by Temporal's."""


def run_status(status: WorkflowExecutionStatus | None, memo: Mapping[str, Any]) -> RunStatus:
    """A run's status: Temporal's, and for a running run what its memo says it waits on."""
    if status == WorkflowExecutionStatus.RUNNING:
        return RunStatus(memo.get(STATUS, RunStatus.RUNNING))
    return CLOSED.get(status, RunStatus.UNKNOWN) if status else RunStatus.UNKNOWN


async def status_of(handle: WorkflowHandle[Any, Any]) -> RunStatus:
    """The status of the run behind ``handle``, from its description."""
    description = await handle.describe()
    return run_status(description.status, await description.memo())


async def list_runs(client: Client, limit: int) -> list[RunSummary]:
    """The newest ``limit`` runs of the workflows, newest first."""
    types = " or ".join(f"WorkflowType = '{name}'" for name in WORKFLOWS)
    runs = []
    async for execution in client.list_workflows(types, limit=limit):
        memo = await execution.memo()
        runs.append(
            RunSummary(
                thread_id=execution.id,
                graph=execution.workflow_type,
                status=run_status(execution.status, memo),
                started=_iso(execution.start_time),
                input=str(memo.get("input", "")),
            )
        )
    return runs


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
