"""Graphs that refuse bad input before anything of the run is saved.

LangGraph saves a run's input in the thread's first checkpoint before any node runs, so an
input that the first node refuses stays behind in the database (on SQLite a NUL and all; on
PostgreSQL, where a NUL cannot be stored, the run breaks off half-saved). A graph built by
:class:`CheckedStateGraph` checks its input against its ``input_schema`` first. Every way of
running a compiled graph goes through ``stream`` or ``astream`` (``invoke``, ``ainvoke``,
``batch``, ``astream_events``, and what the LangGraph API servers call), so those two check;
so do the state updates (``update_state``, ``threads.update_state`` over the API).

The same two hold the process's garbage collector to fewer full collections while the run is
in flight (``garbage_collection.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import aclosing
from typing import Any, Self, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateUpdate
from pydantic import BaseModel

from langgraph_fanout.garbage_collection import fewer_full_collections
from langgraph_fanout.llm.spending import LEDGER_KEY, CallJournal, Ledger
from state.context import Context
from state.inputs import check_update, parse_input
from state.spending import RUN_KEY


class CheckedGraph(CompiledStateGraph[Any, Context, Any, Any]):
    """A compiled graph that validates a run's input before LangGraph saves it."""

    @classmethod
    def of(cls, graph: CompiledStateGraph[Any, Context, Any, Any]) -> Self:
        """``graph`` as this class: its attributes, as ``Pregel.copy`` passes them on.

        LangGraph (1.2) offers no public way to check an input before it saves it:
        ``StateGraph.compile`` makes a ``CompiledStateGraph`` by name (no class to plug in),
        the run's first checkpoint holds the raw input before the ``__start__`` task
        validates it against ``input_schema`` (so node-level checks come too late), and a
        wrapping ``Runnable`` is not the ``Pregel`` the servers require. Hence this copy into a
        subclass; ``tests/test_library_contracts.py`` fails on the next LangGraph minor, to
        look again (and lift ``langgraph<1.3``).
        """
        attributes = {k: v for k, v in vars(graph).items() if k != "__orig_class__"}
        checked = cls(**attributes)
        # What compile sets after __init__ (the v2 stream's output mappers): __init__ drops it.
        vars(checked).update({k: v for k, v in attributes.items() if k not in vars(checked)})
        return checked

    def check_input(self, input: Any) -> None:
        """Refuse an input the graph's ``input_schema`` refuses.

        A dict is a new run's input. A ``Command`` resumes a paused run (its answer is checked
        by the node it answers); an ``update`` in it that sets an input field is held to the
        same rules as an input. None resumes a thread.

        Raises:
            InvalidInputError: the input is invalid; nothing has been saved.
        """
        schema = self.builder.input_schema
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return
        if isinstance(input, Command):
            check_update(schema, self.builder.state_schema, input.update)
        elif isinstance(input, dict):
            parse_input(schema, input)

    def check_settings(self, context: Any) -> None:
        """Refuse run settings the graph's workflow cannot honour (``Workflow.check_settings``).

        A dict (the servers') is validated by the run as usual; only its ``review_plan`` is
        looked at here.

        Raises:
            ConfigurationError: e.g. a plan review asked of a graph that has no plan; nothing
                has been saved.
        """
        if isinstance(context, dict):
            context = Context(review_plan=context.get("review_plan") is True)
        from langgraph_fanout.workflows import (
            WORKFLOWS,
        )  # not at import: an entry may build its graph

        workflow = WORKFLOWS.get(self.name)
        if workflow is not None and isinstance(context, Context):
            workflow.check_settings(context)

    def check_updates(self, supersteps: Sequence[Sequence[StateUpdate]]) -> None:
        """Refuse state updates that no run could make (:func:`state.inputs.check_update`).

        Raises:
            InvalidInputError: an update is refused; nothing has been saved.
        """
        schema = self.builder.input_schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            for superstep in supersteps:
                for update in superstep:
                    check_update(schema, self.builder.state_schema, update.values)

    def bulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        """``Pregel.bulk_update_state`` (``update_state`` too), once the updates are checked."""
        self.check_updates(supersteps)
        saver = self._saver_of(config)
        saved = saver.get_tuple(config) if saver else None
        return super().bulk_update_state(_same_run(config, saved), supersteps)

    async def abulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        """``Pregel.abulk_update_state`` (``aupdate_state`` too), once the updates are checked."""
        self.check_updates(supersteps)
        saver = self._saver_of(config)
        saved = await saver.aget_tuple(config) if saver else None
        return await super().abulk_update_state(_same_run(config, saved), supersteps)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """``Pregel.stream``, once input and settings are checked, counting its spending.

        While it runs, full garbage collections are fewer (``garbage_collection.py``).
        """
        self.check_input(input)
        self.check_settings(kwargs.get("context"))
        saver = self._saver_of(config)
        saved = saver.get_tuple(cast(RunnableConfig, config)) if saver else None
        return _in_flight(
            super().stream(input, _with_ledger(input, config, saver, saved), **kwargs)
        )

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        """``Pregel.astream``, once input and settings are checked, counting its spending.

        While it runs, full garbage collections are fewer (``garbage_collection.py``).
        """
        self.check_input(input)
        self.check_settings(kwargs.get("context"))
        saver = self._saver_of(config)
        saved = await saver.aget_tuple(cast(RunnableConfig, config)) if saver else None
        config = _with_ledger(input, config, saver, saved)
        # Closed with this generator, so LangGraph's cleanup runs when a caller stops early.
        parts = cast(AsyncGenerator[Any, None], super().astream(input, config, **kwargs))
        async with aclosing(parts):
            with fewer_full_collections():
                async for part in parts:
                    yield part

    def _saver_of(self, config: RunnableConfig | None) -> BaseCheckpointSaver | None:
        """The checkpointer that keeps ``config``'s thread (None: no thread, or none kept)."""
        thread = (config or {}).get("configurable", {}).get("thread_id")
        saver = self.checkpointer
        return saver if thread and isinstance(saver, BaseCheckpointSaver) else None


def _in_flight(parts: Iterator[Any]) -> Iterator[Any]:
    """``parts`` streamed with :func:`fewer_full_collections` held (closed with this)."""
    with fewer_full_collections():
        yield from parts


def _with_ledger(
    input: Any,
    config: RunnableConfig | None,
    saver: BaseCheckpointSaver | None,
    saved: CheckpointTuple | None,
) -> RunnableConfig:
    """``config`` with a new ledger for its run, and the run's id in its metadata.

    A run that goes on (:func:`_goes_on`) keeps the id that its thread's latest checkpoint
    (``saved``) names, and what it spent (calls in flight at a crash included); a new run gets
    an id of its own and starts from nothing, on a used thread too. ``saver`` journals the
    calls of a run under a limit.
    """
    config = config or {}
    journal = CallJournal(saver) if saver is not None else None
    run = saved.metadata.get(RUN_KEY) if saved is not None else None
    if saved is not None and run and _goes_on(input, config, saved):
        values, writes = saved.checkpoint["channel_values"], saved.pending_writes or []
        ledger = Ledger.resumed(str(run), values, writes, journal)
    else:
        ledger = Ledger(uuid.uuid4().hex, journal=journal)
    configurable = {**config.get("configurable", {}), LEDGER_KEY: ledger}
    return _naming(ledger.run, {**config, "configurable": configurable})


def _same_run(config: RunnableConfig, saved: CheckpointTuple | None) -> RunnableConfig:
    """``config`` for a state update: its checkpoint names the run the latest one names.

    So the run that goes on after the update keeps counting what it spent.
    """
    run = saved.metadata.get(RUN_KEY) if saved is not None else None
    return config if run is None else _naming(str(run), config)


def _naming(run: str, config: RunnableConfig) -> RunnableConfig:
    """``config`` whose checkpoints name run ``run`` (their metadata's ``RUN_KEY``)."""
    return {**config, "metadata": {**config.get("metadata", {}), RUN_KEY: run}}


def _goes_on(input: Any, config: RunnableConfig, saved: CheckpointTuple) -> bool:
    """Whether the run goes on from the thread's latest checkpoint, as LangGraph decides.

    That is: no input, a ``Command``, or the run id that checkpoint was written by (a server
    running the same run again).
    """
    run_id = config.get("metadata", {}).get("run_id")
    return (
        input is None
        or isinstance(input, Command)
        or (run_id is not None and saved.metadata.get("run_id") == run_id)
    )


class CheckedStateGraph(StateGraph[Any, Context, Any, Any]):
    """A ``StateGraph`` whose ``compile`` makes a :class:`CheckedGraph`."""

    def compile(self, *args: Any, **kwargs: Any) -> CheckedGraph:
        """``StateGraph.compile``, as a :class:`CheckedGraph`."""
        return CheckedGraph.of(super().compile(*args, **kwargs))
