"""Where runs run, as the commands see it: one interface, two implementations.

:class:`~langgraph_fanout.cli.local.InProcess` runs a graph in this process against a
checkpointer; :class:`~langgraph_fanout.cli.temporal.OnTemporal` starts it as a Temporal
workflow and watches it. The commands (``langgraph_fanout.cli.commands``) are written once
over this interface. A runtime is an async context manager: what it opens on the way (a
database, a thread's lock, a Temporal client) is closed when the command ends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph_fanout.cli.request import Request
    from langgraph_fanout.cli.review import Reviewer
    from langgraph_fanout.persistence.run_records import RunRecord
    from langgraph_fanout.run_status import RunStatus
    from langgraph_fanout.workflows import Workflow


class SpendingPaused(Exception):
    """The run paused at a spending limit (it stays paused); ``pause`` is the interrupt's value."""

    def __init__(self, pause: dict[str, Any]) -> None:
        super().__init__(pause.get("kind"))
        self.pause = pause


class RunFailed(Exception):
    """The run failed: in ``tasks`` (node, label, error each), else for ``cause``."""

    def __init__(self, tasks: list[tuple[str, str, str]], cause: str) -> None:
        super().__init__(cause)
        self.tasks, self.cause = tasks, cause


class RunLost(Exception):
    """The command can no longer follow the run (it may go on elsewhere).

    Printed as ``word: message``, then ``hint``; the command exits with ``code``.
    """

    def __init__(self, word: str, message: str, hint: str, code: int) -> None:
        super().__init__(message)
        self.word, self.message, self.hint, self.code = word, message, hint, code


@dataclass(frozen=True)
class Finished:
    """A run that ended: its output, and the LLM calls and tokens it used."""

    output: dict[str, Any]
    usage: dict[str, Any]


class Runtime(ABC):
    """Starts, attaches to, follows, shows and lists runs."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.resources = AsyncExitStack()

    async def __aenter__(self) -> Runtime:
        await self.resources.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.resources.__aexit__(*exc)

    where = ""
    """What the run header adds after the model: where the run runs."""

    @abstractmethod
    def check(self) -> None:
        """Refuse, before anything else, the options this runtime cannot honour.

        Raises:
            UsageError: one of them.
        """

    @abstractmethod
    async def start(self, workflow: Workflow, record: RunRecord, payload: dict[str, Any]) -> bool:
        """Start ``record``'s run on ``payload``, or attach to the one its thread holds (True).

        Raises:
            UsageError: the thread holds another run, or the run cannot start as asked.
        """

    @abstractmethod
    async def find(self, thread_id: str) -> RunRecord:
        """The record of the run on ``thread_id``.

        Raises:
            UsageError: there is none.
        """

    @abstractmethod
    async def status(self, record: RunRecord) -> RunStatus:
        """Where the run stands now."""

    @abstractmethod
    async def reopen(self, record: RunRecord) -> RunRecord:
        """Take the run for a resume: the record it goes on with (the command line's settings).

        Raises:
            UsageError: it cannot go on as the command line asks.
        """

    @abstractmethod
    async def prepare(self, record: RunRecord) -> None:
        """Last steps before a resumed run goes on, once every refusal is behind."""

    @abstractmethod
    async def follow(
        self, record: RunRecord, payload: dict[str, Any] | None, reviewer: Reviewer | None
    ) -> Finished:
        """Run or watch the run to its end, answering its plan review.

        ``payload``: the input of a run :meth:`start` began here (None: it goes on).

        Raises:
            SpendingPaused: it waits at a spending limit.
            ReviewStopped: it waits at its plan review, unanswered.
            RunFailed: it failed.
            RunLost: this command cannot follow it any more.
        """

    @abstractmethod
    async def shown(self, record: RunRecord) -> dict[str, Any]:
        """``fanout show``'s view of the run (``print_shown`` prints it)."""

    @abstractmethod
    async def runs(self, limit: int) -> tuple[list[dict[str, str]], str]:
        """The newest ``limit`` runs as ``fanout runs`` lists them, and where they were found."""

    @abstractmethod
    def resume_hint(self, thread_id: str, pause: dict[str, Any] | None = None) -> str:
        """How to go on with a paused run (past ``pause``, a spending limit's, if given)."""

    @abstractmethod
    def stopped_hint(self, thread_id: str) -> str:
        """What a stop signal leaves behind, and how to go on."""

    @abstractmethod
    def failure_hint(self, thread_id: str) -> str:
        """Where to go next after the run failed."""
