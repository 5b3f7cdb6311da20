"""The served graphs hold their thread's lock while they run, as ``fanout`` does.

A server's run and a ``fanout resume`` of the same thread must never both run it
(``langgraph_fanout/persistence/thread_lock.py``). Every run the LangGraph API servers make goes
through the graph's ``astream`` (``runs.wait``, ``runs.stream``, through ``astream_events`` too),
and every state update through ``abulk_update_state``, so the graph
``langgraph_fanout/server/graphs.py`` serves takes the thread's lock there and holds it until the
run or the update ends: whichever server serves it (``langgraph dev``, Aegra) and whatever
checkpointer it gives the graph. The lock is taken in the database $FANOUT_DB names, which must be
the one that holds the server's threads, as for ``fanout``.

On PostgreSQL a run writes with the project's saver (``persistence/batched_postgres.py``): the
server's own when it is that one (``langgraph dev``), else one opened on $FANOUT_DB for this
process (Aegra gives the library's saver). So every run's writes ride out a database restart and
are fenced: after a restart, a run whose thread another process took can no longer write to it,
and it starts no new LLM call until it knows the thread is still its own. Such a run then waits
for the thread like any other and goes on from where the taker left it.

A run that finds its thread busy waits for it, up to $FANOUT_LOCK_WAIT seconds (default 60),
then fails with a clear error. Waiting, not refusing: the server itself queues a second run on
a busy thread (its default multitask strategy), and a replica that picks up a run whose lease
ran out while its first worker still runs it must not run it beside that worker, nor fail a
run that is about to finish.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import StateUpdate

from langgraph_fanout.checked_graph import CheckedGraph
from langgraph_fanout.environment import environment
from langgraph_fanout.llm.call import with_admission
from langgraph_fanout.persistence.batched_writes import BatchedWrites
from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.persistence.run_records import RunRecord
from langgraph_fanout.persistence.thread_lock import (
    FENCE_KEY,
    HeldThread,
    ThreadTakenOverError,
    thread_lock,
)
from langgraph_fanout.persistence.urls import db_url, is_postgres, redact
from langgraph_fanout.workflows import WORKFLOWS
from state.context import ConfigurationError, Context

logger = logging.getLogger(__name__)


class OneWriterGraph(CheckedGraph):
    """A graph whose runs and updates on a thread hold the thread's lock (``fanout``'s)."""

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        """``Pregel.astream`` holding the thread's lock; a run that saves nothing takes none.

        Raises:
            InvalidInputError: the input is invalid (found before waiting for the thread).
            ThreadBusyError: another process still ran the thread after the wait.
            ThreadTakenOverError: another process took the thread after a database restart.
            ConfigurationError: $FANOUT_DB or $FANOUT_LOCK_WAIT cannot be right.
        """
        thread_id = _thread_of(config)
        if thread_id is None or not isinstance(self.checkpointer, BaseCheckpointSaver):
            async with aclosing(_parts(super().astream(input, config, **kwargs))) as parts:
                async for part in parts:
                    yield part
            return
        self.check_input(input)
        config = record_run(self.name, input, config or {}, kwargs.get("context"))
        while True:
            async with self._holding(thread_id) as (graph, held):
                try:
                    fenced = with_admission(held.fenced(config or {}), held.admit)
                    run = _parts(super(OneWriterGraph, graph).astream(input, fenced, **kwargs))
                    async with aclosing(run):
                        async for part in run:
                            yield part
                    return
                except ThreadTakenOverError as exc:
                    logger.warning("%s; waiting for it to end, then going on from there", exc)
            # Whoever took the thread (the same run, queued again by the server after the
            # outage, or `fanout resume`) has it now: once it lets go, this run goes on from
            # the thread's latest checkpoint, which is usually the end: so the run ends with
            # the thread's result, not with an error beside a finished report.
            input, config = None, _latest(config)

    async def abulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        """``Pregel.abulk_update_state``, once the updates are checked, holding the thread's lock.

        ``aupdate_state`` comes here too, and so does the API's ``threads.update_state``.

        Raises:
            InvalidInputError: an update is refused (found before waiting for the thread).
            ThreadBusyError: another process still ran the thread after the wait.
        """
        thread_id = _thread_of(config)
        if thread_id is None or not isinstance(self.checkpointer, BaseCheckpointSaver):
            return await super().abulk_update_state(config, supersteps)
        self.check_updates(supersteps)
        async with self._holding(thread_id) as (graph, held):
            fenced = held.fenced(config)
            saved = await super(OneWriterGraph, graph).abulk_update_state(fenced, supersteps)
        configurable = {k: v for k, v in saved["configurable"].items() if k != FENCE_KEY}
        return {**saved, "configurable": configurable}  # the API answers with it

    @asynccontextmanager
    async def _holding(self, thread_id: str) -> AsyncIterator[tuple[OneWriterGraph, HeldThread]]:
        """This graph on the saver its writes go through, while the thread's lock is held."""
        assert isinstance(self.checkpointer, BaseCheckpointSaver)
        url = lock_database(self.checkpointer)
        saver = await writer_saver(self.checkpointer, url)
        graph = self if saver is self.checkpointer else self.copy(update={"checkpointer": saver})
        async with thread_lock(url, thread_id, wait=lock_wait()) as held:
            yield graph, held


def record_run(graph: str, input: Any, config: RunnableConfig, context: Any) -> RunnableConfig:
    """``config`` with the run's record in its metadata, if it starts a run of a workflow.

    So ``fanout runs`` and ``fanout show`` list the runs the servers make
    (``persistence/run_records.py``); a resume or an answer to a review keeps the record the
    run started with.
    """
    workflow = WORKFLOWS.get(graph)
    if workflow is None or not isinstance(input, dict):
        return config
    door = "aegra" if "aegra_api" in sys.modules else "langgraph-api"
    record = RunRecord.new(
        workflow,
        str(input.get(workflow.input_field, "")),
        Context.of(context),
        _thread_of(config),
        door,
    )
    return {**config, "metadata": {**config.get("metadata", {}), **record.metadata}}


def _latest(config: RunnableConfig | None) -> RunnableConfig:
    """``config`` naming the thread's latest checkpoint (not one by id)."""
    config = config or {}
    configurable = {k: v for k, v in config.get("configurable", {}).items() if k != "checkpoint_id"}
    return {**config, "configurable": configurable}


def _thread_of(config: RunnableConfig | None) -> str | None:
    thread_id = (config or {}).get("configurable", {}).get("thread_id")
    return None if thread_id is None else str(thread_id)


def _parts(parts: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    return cast(AsyncGenerator[Any, None], parts)


_WRITERS: dict[tuple[asyncio.AbstractEventLoop, str], BatchedWrites] = {}
_OPENING = asyncio.Lock()
_OPEN = AsyncExitStack()


async def writer_saver(checkpointer: BaseCheckpointSaver, url: str) -> BaseCheckpointSaver:
    """The saver a run on ``checkpointer``'s threads writes with.

    The server's own, unless it keeps threads in PostgreSQL with the library's saver (Aegra):
    then the project's saver on ``url`` (the same database), opened once for this process.
    """
    if not isinstance(checkpointer, AsyncPostgresSaver) or isinstance(checkpointer, BatchedWrites):
        return checkpointer
    key = (asyncio.get_running_loop(), url)
    async with _OPENING:
        if key not in _WRITERS:
            _WRITERS[key] = await _OPEN.enter_async_context(aopen_checkpointer(url))
    return _WRITERS[key]


def lock_database(checkpointer: BaseCheckpointSaver) -> str:
    """The database of the thread locks: $FANOUT_DB, which must hold the server's threads.

    Raises:
        ConfigurationError: the server keeps threads in PostgreSQL (where replicas on other
            machines share them) and $FANOUT_DB names a SQLite file, whose lock only this
            machine sees. (``langgraph dev`` wraps its checkpointer,
            ``langgraph_fanout/server/checkpointer.py``, which opens $FANOUT_DB itself.)
    """
    url = db_url()
    if isinstance(checkpointer, AsyncPostgresSaver) and not is_postgres(url):
        raise ConfigurationError(
            f"the server keeps its threads in PostgreSQL, but $FANOUT_DB names {redact(url)}: "
            "set FANOUT_DB to the URL of the server's database, where runs lock their thread"
        )
    return url


def lock_wait() -> float:
    """Seconds a run waits for a busy thread: $FANOUT_LOCK_WAIT, else 60.

    Raises:
        ConfigurationError: it is not a number of seconds >= 0.
    """
    return environment("FANOUT_LOCK_WAIT").fanout_lock_wait
