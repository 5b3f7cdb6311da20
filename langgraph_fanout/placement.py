"""Where a graph's nodes run: in this process (the default), or as Temporal activities.

Every node and router is written once, as an ``async`` function. In this process each one is
wrapped in :class:`SyncOrAsync`, so ``graph.invoke`` works as well as ``ainvoke``/``astream``:
async callers await the function itself (no thread pool), sync callers run it on the
process's background event loop (:mod:`langgraph_fanout.background_loop`). The Temporal
placement is :mod:`langgraph_fanout.temporal.placement`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, Protocol

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import StateGraph
from langgraph.runtime import get_runtime
from langgraph.types import interrupt

from langgraph_fanout.background_loop import run_blocking
from langgraph_fanout.llm.retry import LLM_RETRY
from langgraph_fanout.llm.spending import SpendingLimitReached, current_ledger, current_task
from state.spending import Deferred, spending_pause

AsyncFunction = Callable[..., Awaitable[Any]]
"""A node ``async def f(state[, runtime]) -> update`` or a router ``async def f(state) -> ...``."""


class Placement(Protocol):
    """How a graph module adds its nodes and routers."""

    def add_llm_node(
        self,
        builder: StateGraph[Any, Any, Any, Any],
        node: AsyncFunction,
        *,
        parallel: bool = False,
    ) -> None:
        """Add ``node``, which makes one LLM call, under its function's name.

        ``parallel``: it runs beside other LLM nodes (the evaluation branches).
        """

    def add_worker_node(self, builder: StateGraph[Any, Any, Any, Any], node: AsyncFunction) -> None:
        """Add ``node``, a fan-out worker (one ``Send`` each) that makes one LLM call."""

    def add_step(self, builder: StateGraph[Any, Any, Any, Any], step: AsyncFunction) -> None:
        """Add ``step``, which makes no LLM call, under its function's name."""

    def router(self, route: AsyncFunction) -> Any:
        """``route`` as the path of a conditional edge."""


class InProcess:
    """Nodes run in the calling process, each LLM node with the graph's retry policy.

    An LLM node's update carries what its calls spent (:class:`SyncOrAsync`).
    """

    def add_llm_node(
        self,
        builder: StateGraph[Any, Any, Any, Any],
        node: AsyncFunction,
        *,
        parallel: bool = False,
    ) -> None:
        """Add ``node`` with :data:`langgraph_fanout.llm.retry.LLM_RETRY`."""
        held_back: HeldBack = "defer" if parallel else "pause"
        builder.add_node(node.__name__, SyncOrAsync(node, held_back), retry_policy=LLM_RETRY)

    def add_worker_node(self, builder: StateGraph[Any, Any, Any, Any], node: AsyncFunction) -> None:
        """A worker is an LLM node like any other here: one task per ``Send``."""
        builder.add_node(node.__name__, SyncOrAsync(node, "defer-task"), retry_policy=LLM_RETRY)

    def add_step(self, builder: StateGraph[Any, Any, Any, Any], step: AsyncFunction) -> None:
        """Add ``step`` (never retried: it cannot fail for a transient reason)."""
        builder.add_node(step.__name__, SyncOrAsync(step))

    def router(self, route: AsyncFunction) -> SyncOrAsync:
        """``route``, callable from both call styles."""
        return SyncOrAsync(route)


IN_PROCESS = InProcess()


HeldBack = Literal["pause", "defer", "defer-task"]
"""What an LLM node does when a spending limit keeps its call from starting (``SyncOrAsync``)."""


class SyncOrAsync(Runnable[Any, Any]):
    """An async node or router that ``invoke`` can run as well as ``ainvoke``.

    Adds no trace run of its own: LangGraph already traces the node. A function with a
    ``runtime`` parameter gets the run's :class:`~langgraph.runtime.Runtime`.

    An LLM node (``held_back`` set) adds what its calls spent, all its attempts', to its
    update. When a spending limit keeps its call from starting
    (``langgraph_fanout/llm/spending.py``), a node that runs alone (``"pause"``) pauses the run
    with an interrupt and, on resume, tries again under the resumed run's limits; a parallel
    one defers itself to the graph's budget check (``nodes/spending.py``), with its ``Send``
    task (``"defer-task"``) or without (``"defer"``).
    """

    def __init__(self, function: AsyncFunction, held_back: HeldBack | None = None) -> None:
        self.function = function
        self.name = function.__name__
        self.takes_runtime = "runtime" in inspect.signature(function).parameters
        self.held_back = held_back

    def _call(self, input: Any) -> Coroutine[Any, Any, Any]:
        if self.takes_runtime:
            return self.function(input, runtime=get_runtime())  # type: ignore[return-value]
        return self.function(input)  # type: ignore[return-value]

    async def _run(self, input: Any) -> Any:
        if self.held_back is None:
            return await self._call(input)
        while True:
            try:
                update = await self._call(input)
            except SpendingLimitReached as reached:
                if self.held_back == "pause":
                    pause = spending_pause(reached.spent, reached.limits, [self.function.__name__])
                    interrupt(pause)
                    continue  # resumed: try again under the resumed run's limits
                deferred = Deferred(node=self.function.__name__)
                if self.held_back == "defer-task":
                    deferred["task"] = input
                update = {"deferred": [deferred]}
            return _with_spent(update)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Await the function in the caller's event loop."""
        return await self._run(input)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the function on the process's background event loop and wait for it."""
        return run_blocking(self._run(input))


def _with_spent(update: dict[str, Any]) -> dict[str, Any]:
    """``update`` with what the task's calls spent."""
    ledger = current_ledger()
    if ledger is None:
        return update
    return {**update, "spent": ledger.take(current_task())}
