"""Which decisions each graph's plan review accepts: one rule for every door.

In-process the review node applies it to the resume value; the CLI checks a decision with it
before resuming; a Temporal run checks a review update with it before taking it.
"""

from __future__ import annotations

from typing import Any

from state.article import decide_sections
from state.context import Context
from state.research import decide_questions
from state.review import Outcome

PLAN_KEYS = {"article": "sections", "research": "questions"}
"""The graphs with a plan to review, and the key their plan is under."""


def check_decision(graph: str, context: Context, value: Any, plan: dict[str, Any]) -> Outcome[Any]:
    """What ``graph``'s review makes of ``value`` as a decision on ``plan``.

    Raises:
        InvalidDecisionError: the review would refuse ``value``.
    """
    if graph == "article":
        return decide_sections(value, plan.get("sections", []), context.max_sections)
    return decide_questions(value, plan.get("questions", []))
