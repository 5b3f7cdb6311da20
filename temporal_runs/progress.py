"""Follow a run's activities from Temporal: scheduled, running, retrying, done or failed.

The workflow history says when each activity was scheduled and how it ended (with the
attempt that ended it); the workflow's description says which attempt a pending activity is
on and why the last one failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter

POLL_SECONDS = 0.5
"""How often a pending activity's attempt is read while the run goes on."""


@dataclass
class ActivityState:
    """One node execution as an activity."""

    key: str  # the activity id, unique in the run
    node: str  # the graph node, e.g. research_question
    label: str  # the section or question a worker works on ("" for whole-state nodes)
    status: str = "scheduled"  # scheduled, running, retrying, done, failed, cancelled
    attempt: int = 1
    error: str = ""


Listener = Callable[[ActivityState], None]
"""Called on every change of an activity's state."""


class ActivityTracker:
    """The activities of one run, kept up to date from its history and description."""

    def __init__(self, handle: WorkflowHandle[Any, Any], listener: Listener | None = None):
        self.handle = handle
        self.listener = listener or (lambda state: None)
        self.activities: dict[str, ActivityState] = {}
        self._by_event: dict[int, ActivityState] = {}

    async def follow(self) -> None:
        """Track the run until it closes (cancel the task to stop earlier)."""
        poller = asyncio.create_task(self._poll_pending())
        try:
            async for event in self.handle.fetch_history_events(wait_new_event=True):
                self._apply(event)
        finally:
            poller.cancel()

    async def read_history(self) -> None:
        """Bring every activity up to date from the whole history (after the run ended)."""
        async for event in self.handle.fetch_history_events():
            self._apply(event)

    def llm_calls(self) -> int:
        """Attempts made by finished activities: every LLM node makes one request per attempt."""
        return sum(a.attempt for a in self.activities.values() if a.status in ("done", "failed"))

    # --- history ---------------------------------------------------------------------------
    def _apply(self, event: HistoryEvent) -> None:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_id in self.activities:
                return  # seen already (read_history after follow)
            state = ActivityState(
                key=attrs.activity_id,
                node=attrs.activity_type.name.rpartition(".")[2],
                label=self._summary(event),
            )
            self.activities[state.key] = self._by_event[event.event_id] = state
            self.listener(state)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if (known := self._by_event.get(started.scheduled_event_id)) is not None:
                known.attempt = max(known.attempt, started.attempt)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            self._close(done.scheduled_event_id, "done", "")
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed = event.activity_task_failed_event_attributes
            self._close(failed.scheduled_event_id, "failed", _cause(failed.failure))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            timed_out = event.activity_task_timed_out_event_attributes
            self._close(timed_out.scheduled_event_id, "failed", _cause(timed_out.failure))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            canceled = event.activity_task_canceled_event_attributes
            self._close(canceled.scheduled_event_id, "cancelled", "")

    def _close(self, scheduled_event_id: int, status: str, error: str) -> None:
        state = self._by_event.get(scheduled_event_id)
        if state is not None and state.status not in ("done", "failed", "cancelled"):
            state.status, state.error = status, error
            self.listener(state)

    def _summary(self, event: HistoryEvent) -> str:
        if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
            return ""
        converter = DataConverter.default.payload_converter  # what temporal_runs.client uses
        return str(converter.from_payload(event.user_metadata.summary, str))

    # --- pending activities ----------------------------------------------------------------
    async def _poll_pending(self) -> None:
        while True:
            description = await self.handle.describe()
            for pending in description.raw_description.pending_activities:
                state = self.activities.get(pending.activity_id)
                if state is None or state.status in ("done", "failed", "cancelled"):
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
            await asyncio.sleep(POLL_SECONDS)


def _cause(failure: Any) -> str:
    """The innermost cause of a failure: the node's own error (after Temporal's wrappers)."""
    while failure.HasField("cause"):
        failure = failure.cause
    application = failure.HasField("application_failure_info")
    kind = failure.application_failure_info.type if application else ""
    message = str(failure.message)
    return message if not kind or message.startswith(kind) else f"{kind}: {message}"
