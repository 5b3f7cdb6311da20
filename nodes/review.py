"""The pause both orchestrators make when ``Context.review_plan`` is set.

A node calls :func:`ask_reviewer` with its plan: ``interrupt()`` pauses the run (the
checkpointer keeps it), and ``Command(resume=...)`` answers. An answer that is not a valid
decision pauses the run again, with the plan and an ``"error"`` saying what was wrong, so it
can be resumed again correctly (LangGraph re-runs the node on each resume and replays the
earlier answers in order, so the loop ends where it paused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from langgraph.types import interrupt

from state.review import InvalidDecisionError, Outcome

Item = TypeVar("Item")


def ask_reviewer(plan: dict[str, Any], decide: Callable[[Any], Outcome[Item]]) -> Outcome[Item]:
    """Pause with ``plan`` until an answer that ``decide`` accepts resumes the run."""
    request = plan
    while True:
        answer = interrupt(request)
        try:
            return decide(answer)
        except InvalidDecisionError as exc:
            request = {**plan, "error": str(exc)}
