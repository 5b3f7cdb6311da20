"""A run's spending, counted as its LLM calls start and end, and held to ``Context``'s limits.

One :class:`Ledger` per run (``langgraph_fanout/checked_graph.py`` puts it in the run's config,
seeded with what the thread's checkpoints say was spent, the current step's finished tasks
included).
``call_model`` asks :meth:`Ledger.admit` before each call: a call that would pass
``max_llm_calls``, or any call once the finished calls used ``max_total_tokens``, raises
:class:`SpendingLimitReached` instead of starting. Each task's calls and tokens, all its
attempts', go into its update (``langgraph_fanout/placement.py``), so the checkpoints keep them.

Under a limit, each admitted call is also saved before it starts (:class:`CallJournal`): a
write of the step's checkpoint under a task id of its own, which LangGraph leaves alone. So a
call in flight when the process dies still counts when the run resumes, in the total and in
its task's count: a crash never lets a run spend past its limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config

from state.context import Context
from state.spending import NOTHING_SPENT, Spent, add_spent


class SpendingLimitReached(Exception):
    """A limit of the run's ``Context`` keeps an LLM call from starting."""

    def __init__(self, spent: Spent, limit: str, limits: dict[str, int | None]) -> None:
        super().__init__(
            f"{limit} reached: {spent['llm_calls']} LLM calls started, "
            f"{spent['total_tokens']} tokens used"
        )
        self.spent, self.limits = spent, limits


def limit_reached(context: Context, spent: Spent) -> str | None:
    """The limit of ``context`` that keeps one more call from starting after ``spent``.

    As ``max_llm_calls=N`` or ``max_total_tokens=N``; None: the call may start.
    """
    if context.max_llm_calls is not None and spent["llm_calls"] >= context.max_llm_calls:
        return f"max_llm_calls={context.max_llm_calls}"
    if context.max_total_tokens is not None and spent["total_tokens"] >= context.max_total_tokens:
        return f"max_total_tokens={context.max_total_tokens}"
    return None


class Admission(Protocol):
    """Admits a run's LLM calls and counts their tokens.

    The run's :class:`Ledger`, or what stands for it where the run's config does not reach
    (a Temporal activity: ``langgraph_fanout/temporal/spending.py``).
    """

    async def admit(self, context: Context) -> None:
        """Count one call, or raise :class:`SpendingLimitReached`."""

    async def used(self, context: Context, tokens: int) -> None:
        """Count the tokens of a call that finished."""


CALL_STARTED = "fanout_call_started"
"""Channel of a :class:`CallJournal` write (its value: the run's id)."""
CALL_MARK = "~call~"
"""Joins a task's checkpoint namespace and a call's number into a journal write's task id."""


@dataclass(frozen=True)
class CallJournal:
    """Saves each admitted LLM call of a run before it starts, with the run's checkpointer."""

    saver: BaseCheckpointSaver

    async def record(self, run: str, task: str, number: int) -> None:
        """Save that task ``task`` (its checkpoint namespace) starts its call ``number``.

        A write of the step's checkpoint, in the task's config (its thread, and the fence of
        a thread held by this process), under the id ``task`` + :data:`CALL_MARK` + number.
        """
        configurable = get_config()["configurable"]
        step = RunnableConfig(
            configurable={
                **configurable,
                "checkpoint_ns": "",
                "checkpoint_id": configurable["checkpoint_map"][""],  # the step's checkpoint
            }
        )
        await self.saver.aput_writes(step, [(CALL_STARTED, run)], f"{task}{CALL_MARK}{number}")


@dataclass
class Ledger:
    """What run ``run`` has spent: in all (``total``, from its checkpoints), and per task.

    A task's own count goes into its update when it ends (:meth:`take`); ``total`` keeps it.
    ``journal``: where calls under a limit are saved before they start (None: not saved).
    """

    run: str
    total: Spent = field(default_factory=lambda: NOTHING_SPENT)
    tasks: dict[str, Spent] = field(default_factory=dict)
    journal: CallJournal | None = None

    @classmethod
    def resumed(
        cls,
        run: str,
        values: dict[str, Any],
        pending_writes: list[tuple[str, str, Any]],
        journal: CallJournal | None,
    ) -> Ledger:
        """The ledger of ``run`` going on from a checkpoint (its ``values`` and writes).

        The state's ``spent`` and the current step's finished tasks'; and each call that a
        task of the step started, journaled, without finishing (in flight at a crash, or in a
        task that paused or failed since): it counts, in the total and in its task's count.
        A task has finished when it wrote its spending (every LLM node's update does). Nothing
        if a run before spent the count.
        """
        spent = values.get("spent") or NOTHING_SPENT
        finished, started = set(), Counter[str]()
        for task_id, channel, value in pending_writes:
            if channel == CALL_STARTED and value == run:
                started[task_id.partition(CALL_MARK)[0]] += 1
            elif channel == "spent":
                finished.add(task_id)
                spent = add_spent(spent, value)
        if spent.get("run") != run:
            spent = NOTHING_SPENT
        in_flight = {
            task: Spent(llm_calls=calls, total_tokens=0)
            for task, calls in started.items()
            if task.rpartition(":")[2] not in finished
        }
        for calls in in_flight.values():
            spent = add_spent(spent, calls)
        return cls(run, spent, in_flight, journal)

    async def admit(self, context: Context) -> None:
        """Count one call of the current task, or refuse it; under a limit, journal it.

        Raises:
            SpendingLimitReached: it would start past ``max_llm_calls``, or the finished calls
                already used ``max_total_tokens``.
        """
        if (reached := limit_reached(context, self.total)) is not None:
            raise SpendingLimitReached(self.total, reached, context.limits())
        self._add(Spent(llm_calls=1, total_tokens=0))
        if self.journal is not None and context.has_limits():
            task = current_task()
            await self.journal.record(self.run, task, self.calls_of(task))

    async def used(self, context: Context, tokens: int) -> None:
        """Add the tokens of the current task's call that just finished."""
        self._add(Spent(llm_calls=0, total_tokens=tokens))

    def calls_of(self, task: str) -> int:
        """How many calls ``task`` has started (its earlier, crashed attempts' included)."""
        return self.tasks.get(task, NOTHING_SPENT)["llm_calls"]

    def take(self, task: str) -> Spent:
        """What ``task`` spent (its attempts' calls), for its update; ``total`` keeps it."""
        return Spent(**self.tasks.pop(task, NOTHING_SPENT), run=self.run)

    def _add(self, spent: Spent) -> None:
        task = current_task()
        self.tasks[task] = add_spent(self.tasks.get(task), spent)
        self.total = add_spent(self.total, spent)


LEDGER_KEY = "__fanout_ledger"
"""Key of the run's :class:`Ledger` in its config's ``configurable``, which LangGraph hands to
every task (a context variable would not do: the API servers step a run's stream in a new task
each time, so what one step sets, the next one's tasks do not see). A ``__`` key: never
checkpoint metadata."""


def current_ledger() -> Ledger | None:
    """The running task's run's ledger (None outside a run of a checked graph: no counting)."""
    try:
        ledger = get_config().get("configurable", {}).get(LEDGER_KEY)
    except RuntimeError:  # not inside a runnable
        return None
    return ledger if isinstance(ledger, Ledger) else None


_admission: ContextVar[Admission | None] = ContextVar("fanout_admission", default=None)


@contextmanager
def admitting(admission: Admission) -> Iterator[None]:
    """Within the block, LLM calls outside a checked graph's run ask ``admission``."""
    token = _admission.set(admission)
    try:
        yield
    finally:
        _admission.reset(token)


def current_task() -> str:
    """The running task's id in its checkpoint namespace ("" outside a graph run)."""
    try:
        metadata = get_config().get("metadata", {})
    except RuntimeError:  # not inside a runnable
        return ""
    return str(metadata.get("langgraph_checkpoint_ns", ""))


class CallUsage:
    """The tokens of one LLM call, as its reply reports them (none if it failed)."""

    def __init__(self) -> None:
        self.tokens = 0

    def add(self, reply: BaseMessage) -> None:
        """Count the tokens ``reply`` says its call used."""
        usage = getattr(reply, "usage_metadata", None)
        self.tokens += usage["total_tokens"] if usage else 0


@asynccontextmanager
async def counted_call(context: Context) -> AsyncIterator[CallUsage]:
    """Admit one LLM call to the run's ledger (journaled under a limit); count its tokens.

    The block hands the call's reply to the :class:`CallUsage` it gets.

    Raises:
        SpendingLimitReached: the call must not start.
    """
    usage = CallUsage()
    ledger: Admission | None = current_ledger() or _admission.get()
    if ledger is None:
        yield usage
        return
    await ledger.admit(context)
    try:
        yield usage
    finally:
        await ledger.used(context, usage.tokens)
