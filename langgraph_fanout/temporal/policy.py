"""Retries, timeouts and heartbeats of LLM activities, from the in-process policy.

One classification: :func:`langgraph_fanout.llm.retry.is_retryable` decides in-process (LangGraph's
``RetryPolicy``) and here, where :class:`RunInterceptor` re-raises every other error as a
non-retryable ``ApplicationError``; Temporal's :class:`RetryPolicy` takes its attempts and
backoff from :data:`langgraph_fanout.llm.retry.LLM_RETRY`. Nodes never import Temporal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.tracers.context import register_configure_hook
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityCancellationType

from langgraph_fanout.llm.retry import LLM_RETRY, is_retryable
from langgraph_fanout.llm.spending import SpendingLimitReached, admitting
from langgraph_fanout.temporal.reuse import reused_result
from langgraph_fanout.temporal.spending import admission, held_back
from state.context import Context

logger = logging.getLogger("langgraph_fanout.temporal.worker")

HEARTBEAT_INTERVAL = timedelta(seconds=1)
"""How often a running LLM activity records a heartbeat with the worker's SDK."""
HEARTBEAT_THROTTLE = timedelta(seconds=2)
"""Longest the SDK holds heartbeats back before it sends the latest to the server (its default,
80% of the timeout, left 1 s of slack: a worker's event loop busy for 1 s under load lost its
activities)."""
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
"""Silence after which the server declares an activity's worker dead and retries it elsewhere."""
ATTEMPT_SLACK = timedelta(seconds=15)
"""Added to ``Context.timeout`` (one LLM request) to bound one attempt of an LLM activity."""
USAGE_KEY = "usage"
"""Key of an LLM activity's result that holds its token usage per model (the run's history
keeps it; the workflow reads the result's other keys only)."""
CALLS_KEY = "llm_calls"
"""Key of an LLM activity's result that holds how many LLM requests it made."""
IDLE_KEY = "last_attempt_made_no_call"
"""Key of an LLM activity's result that says its last attempt made no LLM call (a spending
limit held it back): that attempt is not counted as a call."""


class _Usage(UsageMetadataCallbackHandler):
    """LLM calls and token usage per model of an activity, its earlier attempts' included.

    An attempt sends what the activity has spent so far with each heartbeat; Temporal hands
    the last heartbeat to the next attempt, which goes on counting from there. So a retried
    activity's result, or its final failure, reports every call its attempts made (but the
    last second of an attempt whose worker died).
    """

    run_inline = True  # cheap bookkeeping: no thread hop per event

    def __init__(self, earlier: Any) -> None:
        super().__init__()
        self.calls = 0
        self.on_call: Callable[[], None] = lambda: None
        self.count_from(earlier)

    def count_from(self, earlier: Any) -> None:
        """Count on from what earlier attempts spent (``spent()``), if that is more than so far.

        Called before the attempt's first call.
        """
        if isinstance(earlier, dict) and int(earlier.get(CALLS_KEY, 0)) >= self.calls:
            self.calls = int(earlier.get(CALLS_KEY, 0))
            self.usage_metadata = dict(earlier.get(USAGE_KEY) or {})
        self.earlier_calls = self.calls

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        """Count one LLM call."""
        self.calls += 1
        self.on_call()

    def spent(self) -> dict[str, Any]:
        """``{CALLS_KEY: ..., USAGE_KEY: ...}`` so far."""
        return {CALLS_KEY: self.calls, USAGE_KEY: dict(self.usage_metadata)}


_usage: ContextVar[_Usage | None] = ContextVar("fanout_usage", default=None)
register_configure_hook(_usage, inheritable=True)  # once: every chat model call reports to it


@dataclasses.dataclass
class _Attempt:
    """What a running attempt sends with each heartbeat: its progress and what it spent."""

    usage: _Usage
    progress: Any = None

    def heartbeat(self) -> None:
        activity.heartbeat(self.progress, self.usage.spent())


_attempt: ContextVar[_Attempt | None] = ContextVar("fanout_attempt", default=None)


def checkpoint(progress: Any) -> None:
    """Record ``progress`` as the running activity's (sent with each heartbeat).

    Temporal keeps the last one it got for the activity's next attempt
    (:func:`earlier_progress`).
    """
    attempt = _attempt.get()
    if attempt is not None:
        attempt.progress = progress
        attempt.heartbeat()


def spent_so_far() -> Any:
    """What the running activity spent, its earlier attempts' included (None: not an LLM one)."""
    attempt = _attempt.get()
    return attempt.usage.spent() if attempt is not None else None


def count_from(spent: Any) -> None:
    """Count the running activity's spending on from ``spent`` if that is ahead of its own.

    For what an earlier attempt saved after its last heartbeat (``finished_tasks.py``); call it
    before the attempt's first LLM call.
    """
    attempt = _attempt.get()
    if attempt is not None:
        attempt.usage.count_from(spent)


def earlier_progress() -> Any:
    """The progress the activity's last attempt recorded (None on its first attempt)."""
    details = activity.info().heartbeat_details
    return details[0] if details else None


def _earlier_spent() -> Any:
    details = activity.info().heartbeat_details
    return details[1] if len(details) > 1 else None


def retry_policy() -> RetryPolicy:
    """Temporal's retry policy with the attempts and backoff of :data:`LLM_RETRY`.

    Temporal does not jitter its backoff; a worker lost mid-attempt counts as an attempt.
    """
    return RetryPolicy(
        initial_interval=timedelta(seconds=LLM_RETRY.initial_interval),
        backoff_coefficient=LLM_RETRY.backoff_factor,
        maximum_interval=timedelta(seconds=LLM_RETRY.max_interval),
        maximum_attempts=LLM_RETRY.max_attempts,
    )


def attempt_timeout(context: Context) -> timedelta:
    """How long one attempt of an LLM activity may take under ``context``."""
    return timedelta(seconds=context.timeout) + ATTEMPT_SLACK


def activity_options() -> dict[str, Any]:
    """``workflow.execute_activity`` options of every LLM node.

    ``start_to_close_timeout`` is a default for :func:`attempt_timeout` of the default
    ``Context``; :class:`RunInterceptor` sets each run's own.
    """
    return {
        "start_to_close_timeout": attempt_timeout(Context()),
        "heartbeat_timeout": HEARTBEAT_TIMEOUT,
        "retry_policy": retry_policy(),
    }


class RunInterceptor(Interceptor):
    """Worker interceptor: classifies activity errors, heartbeats, sets per-run timeouts."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity of the worker."""
        return _Activity(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """Per-run activity timeouts from the run's ``Context.timeout``."""
        return _WorkflowInbound


class _Activity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        what = f"{info.activity_type} (run {info.workflow_id}, attempt {info.attempt})"
        logger.info("started %s", what)
        usage = _Usage(_earlier_spent())
        attempt = _Attempt(usage, earlier_progress())
        attempt_token, usage_token = _attempt.set(attempt), _usage.set(usage)
        beating = None
        if info.heartbeat_timeout:
            usage.on_call = attempt.heartbeat  # a call counts even if the worker dies next
            beating = asyncio.create_task(_heartbeat(attempt))
        try:
            with admitting(admission()):
                result = await self.next.execute_activity(input)
        except SpendingLimitReached as reached:  # a lone or parallel LLM node, held back
            result = held_back(info.activity_type.partition(".")[2], reached)
        except Exception as exc:
            logger.info("failed %s: %s: %s", what, type(exc).__name__, exc)
            if info.heartbeat_timeout:
                attempt.heartbeat()  # the next attempt counts on from this one's calls
            if isinstance(exc, ApplicationError):
                raise
            raise failure(exc, usage.spent()) from exc
        finally:
            _usage.reset(usage_token)
            _attempt.reset(attempt_token)
            if beating is not None:
                beating.cancel()
        logger.info("done %s", what)
        return with_usage(result, usage)


def non_retryable(exc: BaseException) -> ApplicationError:
    """``exc`` as an error Temporal will not retry, keeping its type name and message."""
    name = type(exc).__name__
    return ApplicationError(f"{name}: {exc}", type=name, non_retryable=True)


def failure(exc: BaseException, spent: dict[str, Any]) -> ApplicationError:
    """``exc`` as the error Temporal records, with what the activity spent as its details.

    Keeps its type name and message, and whether it is retried
    (:func:`langgraph_fanout.llm.retry.is_retryable`).
    """
    if is_retryable(exc):
        return ApplicationError(str(exc), spent, type=type(exc).__name__)
    error = non_retryable(exc)
    return ApplicationError(error.message, spent, type=error.type, non_retryable=True)


def with_usage(result: Any, usage: _Usage) -> Any:
    """The activity's result (the plugin's dataclass, or its fields) as JSON, usage added.

    The LLM calls and token usage of the activity's attempts go under :data:`CALLS_KEY` and
    :data:`USAGE_KEY`, and :data:`IDLE_KEY` when this attempt made no call.

    Decoding ignores keys a dataclass does not have, so the workflow reads the result as
    before; the token usage stays in the history for clients (``langgraph_fanout.temporal.watch``).
    """
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if not isinstance(result, dict):
        return result
    idle = {IDLE_KEY: True} if usage.calls == usage.earlier_calls else {}
    return {**result, USAGE_KEY: usage.usage_metadata, CALLS_KEY: usage.calls, **idle}


async def _heartbeat(attempt: _Attempt) -> None:
    while True:  # a call shorter than the interval sends none: the server has enough to do
        await asyncio.sleep(HEARTBEAT_INTERVAL.total_seconds())
        attempt.heartbeat()


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self._activities = _WorkflowOutbound(outbound)
        super().init(self._activities)

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        """Run the workflow; when it fails or is cancelled, stop its activities first.

        So the run ends only once no LLM call of it can start any more (a node that failed
        would otherwise leave its siblings running, and starting calls, until their next
        heartbeat found the run closed).
        """
        try:
            return await super().execute_workflow(input)
        finally:
            await self._activities.stop_running()


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor) -> None:
        super().__init__(next)
        self._running: dict[workflow.ActivityHandle[Any], None] = {}  # in start order

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if (reused := reused_result(input)) is not None:
            return reused
        context = getattr(workflow.instance(), "context", None)
        if isinstance(context, Context):  # every activity of our workflows is an LLM node
            input.start_to_close_timeout = attempt_timeout(context)
        input.cancellation_type = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        handle = super().start_activity(input)
        self._running[handle] = None
        handle.add_done_callback(lambda done: self._running.pop(done, None))
        return handle

    async def stop_running(self) -> None:
        """Cancel the activities still running and wait until their workers stopped them."""
        running = list(self._running)
        for handle in running:
            handle.cancel()
        if running:
            await workflow.wait(running)
