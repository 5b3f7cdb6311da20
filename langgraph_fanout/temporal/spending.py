"""Spending limits on Temporal: the run's workflow admits every LLM call its activities make.

Each LLM call of an activity, under a limit, asks the run's workflow first
(:class:`WorkflowAdmission`: an update, so the count is in the run's history, survives worker
and server restarts, and counts every attempt's calls) and reports its tokens when it ends (a
signal). A call the workflow refuses is held back as in-process
(``langgraph_fanout/placement.py``): a worker task or a parallel node defers itself to the
graph's budget check, which pauses the run once; a node that runs alone pauses the run with an
interrupt its activity hands back to the graph (:func:`held_back`). The workflow waits at the
pause until its limits are raised (``GraphWorkflow.raise_limits``), then goes on with the work
that did not start.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from langgraph.types import Interrupt
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from langgraph_fanout.llm.spending import SpendingLimitReached
from state.context import ConfigurationError, Context
from state.spending import Deferred, Spent, spending_pause

logger = logging.getLogger("langgraph_fanout.temporal.worker")

MAX_ADMITTED_CALLS = 1_900
"""Most LLM calls a Temporal run under a limit may make: each is a workflow update, and
Temporal takes at most 2,000 per run (``limit.workflowExecution.maxTotalUpdates``)."""

HELD_BACK: dict[str, Literal["pause", "defer"]] = {}
"""What an LLM node (not a worker) the limit keeps from starting does, by node name
(``ActivityPlacement.add_llm_node`` fills it): pause the run, or defer to the budget check."""


class WorkflowAdmission:
    """An activity's :class:`~langgraph_fanout.llm.spending.Admission`: its run's workflow."""

    def __init__(self, handle: WorkflowHandle[Any, Any], attempt: str) -> None:
        self.handle = handle
        self.attempt = attempt  # names this attempt's updates: a retried RPC counts once
        self.calls = 0

    async def admit(self, context: Context) -> None:
        """Ask the workflow to count one call (under a limit only).

        Raises:
            SpendingLimitReached: the workflow refused it.
        """
        if not context.has_limits():
            return
        self.calls += 1
        try:
            answer: dict[str, Any] = await self.handle.execute_update(
                "admit_call", id=f"{self.attempt}/{self.calls}", result_type=dict
            )
        except RPCError as exc:  # the server out of reach: the attempt fails, Temporal retries
            raise ConnectionError(f"cannot ask the run to admit an LLM call: {exc}") from exc
        if not answer["admitted"]:
            spent = Spent(
                llm_calls=answer["spent"]["llm_calls"],
                total_tokens=answer["spent"]["total_tokens"],
            )
            raise SpendingLimitReached(spent, answer["limit"], context.limits())

    async def used(self, context: Context, tokens: int) -> None:
        """Tell the workflow the tokens a call used (under a limit only)."""
        if context.has_limits() and tokens:
            try:
                await self.handle.signal("used_tokens", tokens)
            except RPCError as exc:  # the call's reply stands; its tokens go uncounted
                logger.warning("could not count %d tokens of an LLM call: %s", tokens, exc)


def admission() -> WorkflowAdmission:
    """The running activity's admission: its run's workflow, this attempt named."""
    info = activity.info()
    assert info.workflow_id is not None  # every activity of ours is a workflow's
    handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
    return WorkflowAdmission(handle, f"{info.activity_id}/{info.attempt}")


def held_back(node: str, reached: SpendingLimitReached) -> dict[str, Any]:
    """The result of an LLM node's activity that the limit kept from its call.

    As the LangGraph plugin's activity output: the node's update deferring it, or the
    interrupt that pauses the run.
    """
    if HELD_BACK.get(node, "pause") == "defer":
        update = {"deferred": [Deferred(node=node)]}
        return {"result": update, "langgraph_command": None, "langgraph_interrupts": None}
    pause = Interrupt(value=spending_pause(reached.spent, reached.limits, [node]))
    return {"result": None, "langgraph_command": None, "langgraph_interrupts": [pause]}


def check_temporal_limits(context: Context) -> None:
    """Refuse limits a Temporal run cannot keep: at most :data:`MAX_ADMITTED_CALLS` calls.

    Raises:
        ConfigurationError: a limit without ``max_llm_calls``, or one above that.
    """
    if context.has_limits() and (
        context.max_llm_calls is None or context.max_llm_calls > MAX_ADMITTED_CALLS
    ):
        raise ConfigurationError(
            f"a Temporal run under a spending limit needs max_llm_calls of at most "
            f"{MAX_ADMITTED_CALLS} (each call is a workflow update; Temporal takes 2,000 a run)"
        )
