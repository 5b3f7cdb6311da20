"""One ``fanout`` command line, typed: what every layer below the argument parser reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from langgraph_fanout.temporal import DEFAULT_TASK_QUEUE


@dataclass(frozen=True, kw_only=True)
class Request:
    """A parsed command line (``fanout COMMAND ...``); unset options are None or empty."""

    command: str
    """A workflow's command (``article``...), ``resume``, ``runs``, ``show`` or ``worker``."""
    db: str | None = None
    json: bool = False
    temporal: str | None = None
    """``HOST:PORT`` of the Temporal server the command works on; None: this process."""
    task_queue: str = DEFAULT_TASK_QUEUE
    value: str = ""
    """A new run's input as given (``-``: read stdin)."""
    thread_id: str | None = None
    """The run's thread: ``--thread`` of a new run, the run ``resume`` and ``show`` name."""
    model: str = ""
    max_concurrency: int | None = None
    max_tokens: int | None = None
    max_llm_calls: int | None = None
    max_total_tokens: int | None = None
    settings: Mapping[str, int] = field(default_factory=dict)
    """The workflow's own settings given as options (``max_sections``...)."""
    review: bool = False
    plan: str | None = None
    """``--plan FILE``: the review's decision."""
    move: bool = False
    renames: Mapping[str, str] = field(default_factory=dict)
    """``--rename OLD=NEW`` of a ``--move``."""
    limit: int = 20
    """How many runs ``fanout runs`` lists."""
    build_id: str | None = None
    promote: bool = True
    """Whether a worker makes its version the current one."""

    @property
    def sets_limits(self) -> bool:
        """Whether the command line sets a spending limit."""
        return self.max_llm_calls is not None or self.max_total_tokens is not None
