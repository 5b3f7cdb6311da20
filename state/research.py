"""Schemas of the durable research-report graph."""

from __future__ import annotations

import operator
from typing import Annotated

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from state.inputs import MAX_TOPIC_CHARS, Topic

MIN_QUESTIONS = 2
MAX_QUESTIONS = 4


class ResearchInput(BaseModel):
    """A topic to research."""

    topic: Topic = Field(description=f"What to research (1-{MAX_TOPIC_CHARS:,} characters).")


class ResearchPlan(BaseModel):
    """The planner's research questions."""

    questions: list[str] = Field(
        description=f"{MIN_QUESTIONS} to {MAX_QUESTIONS} specific, self-contained research "
        "questions that together cover the topic."
    )


class Finding(TypedDict):
    """One researcher's answer."""

    question: Annotated[str, Field(description="The research question.")]
    answer: Annotated[str, Field(description="The researcher's concise answer.")]


class ResearchOutput(TypedDict):
    """What the research graph returns."""

    report: Annotated[str, Field(description="The report combining every finding.")]
    task_count: Annotated[int, Field(description="How many research questions were answered.")]
    findings: Annotated[list[Finding], Field(description="Each question's answer, in plan order.")]


class ResearchState(TypedDict, total=False):
    """Internal state of the research graph."""

    topic: str
    questions: list[str]
    findings: Annotated[list[Finding], operator.add]
    report: str
    task_count: int


class QuestionTask(TypedDict):
    """What ``Send`` hands one researcher."""

    topic: str
    question: str
