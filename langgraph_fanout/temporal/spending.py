"""Spending limits on Temporal: the run's workflow admits every LLM call its activities make.

Each LLM call of an activity, under a limit, asks the run's workflow first
(:class:`WorkflowAdmission`: an update, so the count is in the run's history, survives worker
and server restarts, and counts every attempt's calls) and reports its tokens when it ends (a
signal). A call the workflow refuses is held back as in-process (``graphs/placement.py``): a
worker task or a parallel node defers itself to the graph's budget check, which pauses the run
once; a node that runs alone pauses the run with an interrupt its activity hands back to the
graph (:func:`held_back`). The workflow waits at the pause until its limits are raised
(``GraphWorkflow.raise_limits``), then goes on with the work that did not start.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.types import Interrupt
from temporalio import activity
from temporalio.client import WorkflowHandle

from langgraph_fanout.llm.spending import SpendingLimitReached
from state.context import Context
from state.spending import Deferred, Spent, spending_pause

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
        answer: dict[str, Any] = await self.handle.execute_update(
            "admit_call", id=f"{self.attempt}/{self.calls}", result_type=dict
        )
        if not answer["admitted"]:
            spent = Spent(
                llm_calls=answer["spent"]["llm_calls"],
                total_tokens=answer["spent"]["total_tokens"],
            )
            raise SpendingLimitReached(spent, answer["limit"], context.limits())

    async def used(self, context: Context, tokens: int) -> None:
        """Tell the workflow the tokens a call used (under a limit only)."""
        if context.has_limits() and tokens:
            await self.handle.signal("used_tokens", tokens)


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
