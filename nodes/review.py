"""The plan review of an orchestrator, when ``Context.review_plan`` is set: written once.

A workflow's review node calls :func:`review_plan` with its entry's
:class:`~langgraph_fanout.workflows.Plan`: ``interrupt()`` pauses the run with the plan (the
checkpointer keeps it), and ``Command(resume=...)`` answers. An answer that is not a valid
decision is not an error of the run: the node records why (a pending review whose ``reason``
says what was wrong) and its router (:func:`after_review`) sends the run back to the node,
which pauses again with the plan and that ``"error"``. Each pause is a new task, so every
answer is checked once, as it was given (a task that looped on ``interrupt()`` would replay
its earlier answers from the checkpoint, where serialization may have changed them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph import END
from langgraph.types import interrupt

from langgraph_fanout.workflows import Plan
from state.context import Context
from state.review import InvalidDecisionError, Review


def review_plan(plan: Plan, state: Mapping[str, Any], context: Context) -> dict[str, Any]:
    """Pause with the state's plan until a decision ``plan.decide`` takes; its update.

    The update records the review, and holds the plan to run (approved or edited), or the
    ``plan.rejected`` output; a refused answer is recorded as a pending review whose
    ``reason`` says why (the run pauses again).
    """
    planned = {plan.key: state[plan.key]}
    review = state.get("review")
    refused = review["reason"] if review and review["decision"] == "pending" else ""
    answer = interrupt({**planned, "error": refused} if refused else planned)
    try:
        outcome = plan.decide(answer, planned, context)
    except InvalidDecisionError as exc:
        return {"review": Review(decision="pending", reason=str(exc))}
    if outcome.review["decision"] == "rejected":
        return {"review": outcome.review, **plan.rejected}
    return {"review": outcome.review, plan.key: outcome.plan}


def after_review(plan: Plan, state: Mapping[str, Any]) -> str | None:
    """Where a run goes after planning or its review (None: on to the workers).

    To ``plan.review_node`` while a review is pending (a new plan, a refused answer); END
    once the plan was rejected.
    """
    review: Review | None = state.get("review")
    decision = review["decision"] if review else None
    if decision == "pending":
        return plan.review_node
    if decision == "rejected":
        return END
    return None
