"""The pause both orchestrators make when ``Context.review_plan`` is set.

A review node calls :func:`ask_reviewer` with its plan: ``interrupt()`` pauses the run (the
checkpointer keeps it), and ``Command(resume=...)`` answers. An answer that is not a valid
decision is not an error of the run: the node records why (a pending review whose ``reason``
says what was wrong) and its router sends the run back to the node, which pauses again with
the plan and that ``"error"``. Each pause is a new task, so every answer is checked once, as
it was given (a task that looped on ``interrupt()`` would replay its earlier answers from the
checkpoint, where serialization may have changed them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from langgraph.graph import END
from langgraph.types import interrupt

from state.review import InvalidDecisionError, Outcome, Review

Item = TypeVar("Item")


def ask_reviewer(
    plan: dict[str, Any], review: Review | None, decide: Callable[[Any], Outcome[Item]]
) -> Outcome[Item] | Review:
    """Pause with ``plan`` (and why the last answer was refused, from ``review``).

    Returns what ``decide`` makes of the answer, or, if it refuses it, the pending review to
    record, whose ``reason`` says why.
    """
    refused = review["reason"] if review and review["decision"] == "pending" else ""
    answer = interrupt({**plan, "error": refused} if refused else plan)
    try:
        return decide(answer)
    except InvalidDecisionError as exc:
        return Review(decision="pending", reason=str(exc))


def route_after_review(review: Review | None, review_node: str) -> str | None:
    """Where a run goes after its review (None: on to the workers).

    Back to ``review_node`` when the answer was refused; END when the plan was rejected.
    """
    decision = review["decision"] if review else None
    if decision == "pending":
        return review_node
    if decision == "rejected":
        return END
    return None
