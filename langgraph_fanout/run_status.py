"""Where a run stands, read from its checkpoints or from Temporal: one vocabulary for both."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status, as ``fanout runs`` and ``fanout show`` print it."""

    RUNNING = "running"
    DONE = "done"
    PAUSED = "paused"
    """Waiting for its plan review."""
    AT_LIMIT = "at limit"
    """Waiting at a spending limit, to be resumed with a higher one."""
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    """Broke off between two steps (a crash): resumable."""
    CANCELLED = "cancelled"
    TERMINATED = "terminated"
    TIMED_OUT = "timed out"
    CONTINUED = "continued"
    UNKNOWN = "unknown"
