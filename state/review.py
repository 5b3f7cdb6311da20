"""Plan review: the decisions a paused run accepts, and the record of the one it got.

A run with ``Context(review_plan=True)`` pauses after planning with the plan as the interrupt
value (``{"sections": [...]}`` or ``{"questions": [...]}``). It is resumed with one of:

- the plan, as planned or edited (``{"sections": [...]}`` / ``{"questions": [...]}``): run
  exactly that plan, held to the bounds a model's plan is held to;
- ``{"approve": true}``: run the plan as planned;
- ``{"reject": true, "reason": "..."}`` (reason optional): end the run without any worker.

Anything else is refused with :class:`InvalidDecisionError`, whose message names every
problem. Pure validation (no LangGraph), so the CLI checks a decision before resuming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from state.inputs import explain, usable_text

MAX_REASON_CHARS = 500
"""Longest reason a rejection may give."""

_LINE_BREAKS = re.compile(r"[\t\r\n\u2028\u2029]+")

Decision = Literal["pending", "approved", "edited", "rejected"]


class Review(TypedDict):
    """What became of a plan review."""

    decision: Annotated[
        Decision,
        Field(
            description="pending: the run waits for a decision; approved: the plan ran as "
            "planned; edited: a person's version of the plan ran; rejected: no worker ran."
        ),
    ]
    reason: Annotated[
        str,
        Field(
            description="rejected: the reviewer's reason, if any; pending: why the last answer "
            "was refused (empty before the first); otherwise empty."
        ),
    ]


class InvalidDecisionError(ValueError):
    """A resume value that is not a valid decision on the plan (the run stays paused)."""


def heading(value: str) -> str:
    """A name: one line (no tab or line break either), visible, stripped."""
    if found := _LINE_BREAKS.search(value):
        raise ValueError(
            f"must not contain control characters (U+{ord(found.group()[0]):04X} at "
            f"position {found.start()})"
        )
    return usable_text(value)


def one_line(value: str) -> str:
    """Free text: line breaks and tabs become spaces, stripped; may be empty."""
    folded = _LINE_BREAKS.sub(" ", value)
    return usable_text(folded) if folded.strip() else ""


LINE = (AfterValidator(heading),)
"""Validators of a heading: ``Annotated[str, Field(max_length=...), *LINE]``."""
TEXT = (AfterValidator(one_line),)
"""Validators of free text, folded onto one line (line breaks from a YAML block are fine)."""

STRICT = ConfigDict(strict=True, extra="forbid")


def true(value: bool) -> bool:
    """Refuse ``false``: a decision is stated with ``true``."""
    if value is not True:
        raise ValueError("Input should be true")
    return value


TRUE = Annotated[bool, AfterValidator(true)]
"""Exactly ``true`` (not 1: the model is strict)."""


class Approval(BaseModel):
    """``{"approve": true}``: run the plan as planned."""

    model_config = STRICT
    approve: TRUE


class Rejection(BaseModel):
    """``{"reject": true, "reason": ...}``: end the run without any worker."""

    model_config = STRICT
    reject: TRUE
    reason: Annotated[str, Field(max_length=MAX_REASON_CHARS), *TEXT] = ""


PlanModel = TypeVar("PlanModel", bound=BaseModel)
Item = TypeVar("Item")


@dataclass(frozen=True)
class Outcome(Generic[Item]):
    """A valid decision: the review to record and the plan to run (empty when rejected)."""

    review: Review
    plan: list[Item]


def parse_decision(value: Any, plan_model: type[PlanModel]) -> Approval | Rejection | PlanModel:
    """``value`` as an approval, a rejection or a ``plan_model`` instance.

    Raises:
        InvalidDecisionError: ``value`` is none of them; the message says what is wrong.
    """
    (key,) = plan_model.model_fields
    expected = (
        f'expected {{"{key}": [...]}}, {{"approve": true}} or {{"reject": true, "reason": "..."}}'
    )
    if not isinstance(value, dict):
        raise InvalidDecisionError(f"{expected}; got {type(value).__name__} {value!r:.80}")
    if not {key, "approve", "reject"} & set(value):
        raise InvalidDecisionError(f"{expected}; got the keys {sorted(map(str, value))}")
    model: type[BaseModel] = (
        Rejection if "reject" in value else Approval if "approve" in value else plan_model
    )
    try:
        return model.model_validate(value)  # type: ignore[return-value]
    except ValidationError as exc:
        raise InvalidDecisionError(f"invalid decision on the plan: {explain(exc)}") from None


def outcome(
    decision: Approval | Rejection | BaseModel, planned: list[Item], plan: list[Item]
) -> Outcome[Item]:
    """What ``decision`` (carrying ``plan``, if a plan) means for a run that planned ``planned``."""
    if isinstance(decision, Rejection):
        return Outcome(Review(decision="rejected", reason=decision.reason), [])
    if isinstance(decision, Approval) or plan == planned:
        return Outcome(Review(decision="approved", reason=""), planned)
    return Outcome(Review(decision="edited", reason=""), plan)


PENDING = Review(decision="pending", reason="")
