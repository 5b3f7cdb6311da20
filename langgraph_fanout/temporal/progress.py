"""A run's activities from its Temporal history: scheduled, running, retrying, done or failed.

The history says when each activity was scheduled and how it ended (with the attempt that
ended it, and the result, which carries the attempt's token usage); the workflow's
description says which attempt a pending activity is on and why the last one failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.converter import DataConverter

from langgraph_fanout.temporal.policy import CALLS_KEY, IDLE_KEY, USAGE_KEY
from state.usage import merge_usage, run_usage

FINISHED = ("done", "failed", "cancelled")


@dataclass
class ActivityState:
    """One node execution as an activity."""

    key: str  # the activity id, unique in the run
    node: str  # the graph node, e.g. research_question
    label: str  # the section or question a worker works on ("" for whole-state nodes)
    status: str = "scheduled"  # scheduled, running, retrying, done, failed, cancelled
    attempt: int = 1
    error: str = ""
    spent: Payload | None = field(default=None, repr=False)  # its calls and usage, encoded
    calls: int = 0  # LLM calls its attempts made (known once ``spent`` is read)
    started: bool = False  # an attempt of it started on a worker
    idle: bool = False  # its last attempt made no call (a spending limit held it back)


Listener = Callable[[ActivityState], None]
"""Called on every change of an activity's state."""


class ActivityTracker:
    """The activities of one run, kept up to date from its history and description.

    Feeding it the same events again (a history read again after an outage) changes nothing.
    """

    def __init__(self, listener: Listener | None = None) -> None:
        self.listener = listener or (lambda state: None)
        self.activities: dict[str, ActivityState] = {}
        self._by_event: dict[int, ActivityState] = {}
        self.last_event_id = 0

    async def usage(self, converter: DataConverter) -> dict[str, Any]:
        """LLM calls and token usage of the ended activities, as ``--json`` shows them.

        Each activity reports the calls and tokens of all its attempts: in its result, in
        its final failure, or in the last heartbeat of an attempt that timed out
        (``langgraph_fanout/temporal/policy.py``). Every attempt counts as one call at
        least, without tokens where it reported none (its worker died or stalled before its
        heartbeat reached the server, or it was cancelled): an upper bound, since an attempt
        whose worker stalled before its request made none.
        """
        by_model: dict[str, Any] = {}
        calls = 0
        for state in self.activities.values():
            if state.status not in FINISHED:
                continue
            if state.spent is not None:
                (value,) = await converter.decode([state.spent])
                state.spent = None
                if isinstance(value, dict):
                    state.calls = int(value.get(CALLS_KEY, 0))
                    merge_usage(by_model, value.get(USAGE_KEY) or {})
                    state.idle = bool(value.get(IDLE_KEY))
            if state.status != "cancelled" or state.started:  # each attempt made a call
                state.calls = max(state.calls, state.attempt - state.idle)
            calls += state.calls
        return run_usage(calls, by_model)

    def apply(self, event: HistoryEvent) -> None:
        """Take one history event (events at or before the last one taken are skipped)."""
        if event.event_id <= self.last_event_id:
            return
        self.last_event_id = event.event_id
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            state = ActivityState(
                key=attrs.activity_id,
                node=attrs.activity_type.name.rpartition(".")[2],
                label=_summary(event),
            )
            self.activities[state.key] = self._by_event[event.event_id] = state
            self.listener(state)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if (known := self._by_event.get(started.scheduled_event_id)) is not None:
                known.started = True
                if started.attempt > known.attempt and known.status not in FINISHED:
                    # A retry no description showed (it waited between two looks): the
                    # history records the attempt that ran, with the failure before it.
                    known.status, known.attempt = "retrying", started.attempt
                    known.error = started.last_failure.message
                    self.listener(known)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            self._close(done.scheduled_event_id, "done", "", done.result.payloads[:1])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed = event.activity_task_failed_event_attributes
            spent = failed.failure.application_failure_info.details.payloads[:1]
            self._close(failed.scheduled_event_id, "failed", failure_cause(failed.failure), spent)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            timed_out = event.activity_task_timed_out_event_attributes
            beat = timed_out.failure.timeout_failure_info.last_heartbeat_details.payloads[1:2]
            self._close(
                timed_out.scheduled_event_id, "failed", failure_cause(timed_out.failure), beat
            )
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            canceled = event.activity_task_canceled_event_attributes
            self._close(canceled.scheduled_event_id, "cancelled", "", ())

    def pending(self, infos: list[PendingActivityInfo]) -> None:
        """Take the pending activities of the run's description: attempts and last failures."""
        for pending in infos:
            state = self.activities.get(pending.activity_id)
            if state is None or state.status in FINISHED:
                continue
            if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                status = "running"
            elif pending.attempt > 1:
                status = "retrying"  # waiting for its next attempt
            else:
                status = "scheduled"
            error = pending.last_failure.message
            if (status, pending.attempt, error) != (state.status, state.attempt, state.error):
                state.status, state.attempt, state.error = status, pending.attempt, error
                self.listener(state)

    def _close(
        self, scheduled_event_id: int, status: str, error: str, spent: Sequence[Payload]
    ) -> None:
        state = self._by_event.get(scheduled_event_id)
        if state is not None and state.status not in FINISHED:
            state.status, state.error = status, error
            state.spent = spent[0] if spent else None
            self.listener(state)


def _summary(event: HistoryEvent) -> str:
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return ""
    converter = DataConverter.default.payload_converter  # summaries are plain JSON strings
    return str(converter.from_payload(event.user_metadata.summary, str))


def failure_cause(failure: Any) -> str:
    """The innermost cause of a failure: the node's own error (after Temporal's wrappers)."""
    while failure.HasField("cause"):
        failure = failure.cause
    application = failure.HasField("application_failure_info")
    kind = failure.application_failure_info.type if application else ""
    message = str(failure.message)
    return message if not kind or message.startswith(kind) else f"{kind}: {message}"
