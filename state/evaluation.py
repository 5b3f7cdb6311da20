"""Schemas of the parallel evaluation graph."""

from __future__ import annotations

import operator
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field
from typing_extensions import TypedDict

from state.inputs import MAX_TEXT_CHARS, usable_text
from state.spending import Deferred, Spent, add_spent


class EvaluationInput(BaseModel):
    """A text to judge for a general audience."""

    text: Annotated[
        str,
        Field(
            description=f"The text to evaluate (1-{MAX_TEXT_CHARS:,} characters).",
            min_length=1,
            max_length=MAX_TEXT_CHARS,
        ),
        AfterValidator(usable_text),
    ]


class Verdict(BaseModel):
    """One evaluator's judgement, as the model returns it."""

    explanation: str = Field(description="Two or three sentences on why, citing the text.")
    is_appropriate: bool = Field(
        description="True if the text is appropriate for a general audience on this criterion."
    )


class Evaluation(TypedDict):
    """One evaluator's judgement, labelled with the evaluator that made it."""

    evaluator: Annotated[str, Field(description="Which evaluation branch judged.")]
    explanation: Annotated[str, Field(description="Why, in the evaluator's words.")]
    is_appropriate: Annotated[bool, Field(description="The evaluator's vote.")]


class AggregatedVerdict(BaseModel):
    """The aggregator's final call, as the model returns it."""

    summary: str = Field(description="A short summary of the evaluations and the final call.")
    is_appropriate: bool = Field(
        description="True if the text is appropriate for a general audience overall."
    )


class EvaluationOutput(TypedDict):
    """What the evaluation graph returns."""

    is_appropriate: Annotated[bool, Field(description="The aggregator's final call.")]
    summary: Annotated[str, Field(description="The aggregator's summary.")]
    evaluations: Annotated[
        list[Evaluation], Field(description="Every branch's evaluation, in branch order.")
    ]
    votes: Annotated[int, Field(description="How many branches voted 'appropriate'.")]


class EvaluationState(TypedDict, total=False):
    """Internal state: the input, the branches' verdicts as they land, and the result."""

    text: str
    verdicts: Annotated[list[Evaluation], operator.add]
    evaluations: list[Evaluation]
    votes: int
    summary: str
    is_appropriate: bool
    spent: Annotated[Spent, add_spent]  # LLM calls and tokens so far (state/spending.py)
    deferred: Annotated[list[Deferred], operator.add]  # parallel calls the limit held back
    resend: list[Deferred]  # what the budget check starts again on resume
