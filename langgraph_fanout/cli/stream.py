"""Run a graph for the CLI: stream it, feed the progress display, stop at plan reviews.

One ``astream`` per leg of the run (``version="v2"`` parts): ``values`` carries the output
and, when the run pauses, its interrupts; on a terminal ``messages`` carries LLM tokens,
labelled by the metadata of the task that asked for them, for the live view: those of at
most as many calls at a time as the table has rows
(``langgraph_fanout.llm.call.StreamSlots``), since each streamed chunk costs CPU and the others
would not be shown. A pause is answered by the
:class:`~langgraph_fanout.cli.review.Reviewer` and the run resumes with ``Command(resume=...)``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from langgraph.types import Command, Interrupt, StreamMode

from langgraph_fanout.cli.progress import MAX_ROWS
from langgraph_fanout.cli.review import Reviewer, ReviewStopped
from langgraph_fanout.cli.runtime import SpendingPaused
from langgraph_fanout.llm.call import STREAM_SLOTS, StreamSlots
from state.spending import is_spending_pause

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph.state import CompiledStateGraph

    from langgraph_fanout.cli.progress import RunProgress
    from state.context import Context


async def stream_run(
    graph: CompiledStateGraph[Any, Context, Any, Any],
    payload: dict[str, Any] | None,
    config: RunnableConfig,
    context: Context,
    progress: RunProgress,
    reviewer: Reviewer | None,
    *,
    stream_slots: int | None = MAX_ROWS,
) -> dict[str, Any]:
    """Run ``payload`` (resume the thread when None) to its end; the graph's output.

    ``stream_slots``: how many LLM calls at a time stream their tokens to a live display
    (None: all of them).

    Raises:
        ReviewStopped: the run paused for a review that got no decision (it stays paused).
        SpendingPaused: the run paused at a spending limit (it stays paused).
    """
    modes: list[StreamMode] = ["values", "messages"] if progress.live else ["values"]
    slots = STREAM_SLOTS.set(None if stream_slots is None else StreamSlots(stream_slots))
    try:
        run_input: dict[str, Any] | Command | None = payload
        if payload is None:  # a run paused at its review is answered before it goes on
            pending = (await graph.aget_state(config)).interrupts
            if pending:
                run_input = await _answer(reviewer, pending, resuming=True)
        while True:
            output: dict[str, Any] = {}
            interrupts: tuple[Interrupt, ...] = ()
            with progress:
                async for part in graph.astream(
                    run_input,
                    config,
                    context=context,
                    stream_mode=modes,
                    output_keys=graph.output_channels,
                    # A step's checkpoint is committed before its tasks run: "async" let a
                    # task's writes commit before the checkpoint they belong to, and a kill
                    # in between lost them (a researcher shown done ran again on resume).
                    durability="sync",
                    version="v2",
                ):
                    if part["type"] == "messages":
                        progress.on_message(*part["data"])
                    elif part["type"] == "values":
                        output, interrupts = part["data"], part["interrupts"]
            if not interrupts:
                return output
            run_input = await _answer(reviewer, interrupts)
    finally:
        STREAM_SLOTS.reset(slots)


async def _answer(
    reviewer: Reviewer | None, interrupts: tuple[Interrupt, ...], *, resuming: bool = False
) -> Command:
    """The command that resumes the run: a decision on its plan, or going on past a limit.

    At a spending limit the run goes on only when it is being resumed (``resuming``), under
    the limits it was resumed with.

    Raises:
        SpendingPaused: the run paused at its spending limit during this leg.
    """
    if is_spending_pause(interrupts[0].value):
        if not resuming:
            raise SpendingPaused(interrupts[0].value)
        return Command(resume=True)
    if reviewer is None:
        raise ReviewStopped("the run paused for a plan review, which this run cannot answer")
    return Command(resume=await ask(reviewer, interrupts[0].value))


async def ask(reviewer: Reviewer, request: dict[str, Any]) -> dict[str, Any]:
    """``reviewer``'s decision on a run paused with ``request`` (its plan, maybe an error).

    Asked on a daemon thread: the event loop keeps handling signals meanwhile, and a run
    stopped at the prompt does not wait for an answer to exit.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[dict[str, Any]] = loop.create_future()

    def decide() -> None:
        try:
            decision = reviewer.decide(request)
        except Exception as exc:  # raised in the awaiting task instead
            loop.call_soon_threadsafe(_settle, answer, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, answer, decision, None)

    threading.Thread(target=decide, name="fanout-review", daemon=True).start()
    return await answer


def _settle(
    answer: asyncio.Future[dict[str, Any]],
    decision: dict[str, Any] | None,
    error: Exception | None,
) -> None:
    if answer.done():  # the run was stopped while the person was deciding
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(decision or {})
