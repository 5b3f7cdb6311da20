"""Schemas of the durable research-report graph."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, field_validator
from typing_extensions import TypedDict

from state.inputs import MAX_TOPIC_CHARS, Topic, usable_text
from state.review import STRICT, TEXT, Outcome, Review, outcome, parse_decision
from state.spending import Deferred, Spent, add_spent

MIN_QUESTIONS = 2
MAX_QUESTIONS = 4
MAX_QUESTION_CHARS = 2_000
"""Longest research question a plan may hold (a model's longer one is cut)."""


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

    report: Annotated[
        str,
        Field(description="The report combining every finding (empty if the plan was rejected)."),
    ]
    task_count: Annotated[int, Field(description="How many research questions were answered.")]
    findings: Annotated[list[Finding], Field(description="Each question's answer, in plan order.")]
    review: Annotated[
        Review | None,
        Field(description="The plan review (Context.review_plan); null if there was none."),
    ]


class ResearchState(TypedDict, total=False):
    """Internal state of the research graph."""

    topic: str
    questions: list[str]
    findings: Annotated[list[Finding], operator.add]
    report: str
    task_count: int
    review: Review | None
    spent: Annotated[Spent, add_spent]  # LLM calls and tokens so far (state/spending.py)
    deferred: Annotated[list[Deferred], operator.add]  # parallel calls the limit held back
    resend: list[Deferred]  # what the budget check starts again on resume


class QuestionTask(TypedDict):
    """What ``Send`` hands one researcher."""

    topic: str
    question: str


Question = Annotated[str, Field(max_length=MAX_QUESTION_CHARS), *TEXT, AfterValidator(usable_text)]


class QuestionsEdit(BaseModel):
    """A person's plan: ``{"questions": ["...", ...]}``, 2-4 distinct questions."""

    model_config = STRICT
    questions: list[Question] = Field(min_length=MIN_QUESTIONS, max_length=MAX_QUESTIONS)

    @field_validator("questions")
    @classmethod
    def _distinct(cls, questions: list[str]) -> list[str]:
        for i, question in enumerate(questions):
            if question in questions[:i]:
                first = questions.index(question)
                raise ValueError(f"question {i + 1} repeats question {first + 1}")
        return questions


def decide_questions(value: Any, planned: list[str]) -> Outcome[str]:
    """The research plan a resume ``value`` decides on.

    Raises:
        InvalidDecisionError: ``value`` is not a valid decision.
    """
    decision = parse_decision(value, QuestionsEdit)
    plan = decision.questions if isinstance(decision, QuestionsEdit) else []
    return outcome(decision, planned, plan)
