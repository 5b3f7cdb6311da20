"""Schemas of the orchestrator-workers article graph."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from state.context import MAX_SECTIONS_LIMIT
from state.inputs import MAX_TOPIC_CHARS, Topic
from state.review import (
    LINE,
    STRICT,
    TEXT,
    InvalidDecisionError,
    Outcome,
    Review,
    outcome,
    parse_decision,
)
from state.spending import Deferred, Spent, add_spent

MAX_NAME_CHARS = 200
"""Longest section name a plan may hold (a model's longer one is cut)."""
MAX_DESCRIPTION_CHARS = 2_000
"""Longest section description a plan may hold (a model's longer one is cut)."""
_WORD = r"[A-Z][a-z]{2,14}|[A-Z]{2,5}"
# The first word: any but "Section..." (the JSON key "sections" primes small models to
# write "Section 1", "Section Aims"); words inside may be short joining words ("of", "and").
_FIRST_WORD = (
    r"[A-RT-Z][a-z]{2,14}|S[a-df-z][a-z]{1,13}|Se[abd-z][a-z]{0,12}|Sec[a-su-z][a-z]{0,11}"
    r"|Sect[a-hj-z][a-z]{0,10}|[A-Z]{2,5}"
)
_JOIN = "a|an|and|as|at|by|for|from|in|into|of|on|or|the|to|vs|with"
HEADING_PATTERN = rf"^({_FIRST_WORD})( ({_JOIN}|{_WORD})){{0,5}} ({_WORD})$"
"""A heading: two to seven words, capitalised (or acronyms) but for joining words inside."""


class ArticleInput(BaseModel):
    """A topic to write a short article about."""

    topic: Topic = Field(
        description=f"What the article is about (1-{MAX_TOPIC_CHARS:,} characters)."
    )


class Section(BaseModel):
    """One planned section of the article."""

    name: str = Field(description="The section's heading.")
    description: str = Field(description="What the section covers, in one or two sentences.")


class Sections(BaseModel):
    """The orchestrator's plan: the article's sections in reading order."""

    sections: Sequence[Section] = Field(description="The sections of the article, in order.")


class LocalSection(Section):
    """A planned section as the embedded model must write it.

    Small models otherwise name sections with placeholders, dates or slugs ("<NAME>",
    "2018/3/4", "heat-pumps"); the grammar built from this schema allows only headings.
    """

    name: str = Field(
        description="The section's heading: two to seven capitalised words.",
        pattern=HEADING_PATTERN,
    )
    description: str = Field(
        description="What the section covers, in one short sentence.", max_length=100
    )


class LocalSections(Sections):
    """The plan as the embedded model must write it: 2-4 sections with short descriptions.

    Sized to fit a reply of about 160 tokens (`make demo`'s cap). These bounds only keep a
    small model on track, so the planner asks other models for :class:`Sections`; every plan
    is then held to ``max_sections`` by the node.
    """

    sections: Sequence[LocalSection] = Field(
        description="2 to 4 sections of the article, in order.", min_length=2, max_length=4
    )


class PlannedSection(TypedDict):
    """A planned section, as the state keeps it."""

    name: Annotated[str, Field(description="The section's heading.")]
    description: Annotated[str, Field(description="What the section covers.")]


class CompletedSection(TypedDict):
    """A written section."""

    name: Annotated[str, Field(description="The section's heading.")]
    content: Annotated[str, Field(description="The section's Markdown body.")]


class ArticleOutput(TypedDict):
    """What the article graph returns."""

    sections: Annotated[list[PlannedSection], Field(description="The plan, in order.")]
    completed_sections: Annotated[
        list[CompletedSection], Field(description="The written sections, in plan order.")
    ]
    article: Annotated[
        str, Field(description="The whole article as Markdown (empty if the plan was rejected).")
    ]
    review: Annotated[
        Review | None,
        Field(description="The plan review (Context.review_plan); null if there was none."),
    ]


class ArticleState(TypedDict, total=False):
    """Internal state of the article graph."""

    topic: str
    sections: list[PlannedSection]
    completed_sections: Annotated[list[CompletedSection], operator.add]
    article: str
    review: Review | None
    spent: Annotated[Spent, add_spent]  # LLM calls and tokens so far (state/spending.py)
    deferred: Annotated[list[Deferred], operator.add]  # parallel calls the limit held back
    resend: list[Deferred]  # what the budget check starts again on resume


class SectionTask(TypedDict):
    """What ``Send`` hands one section writer."""

    topic: str
    section: PlannedSection


class SectionEdit(BaseModel):
    """A section as a person may write it when editing a plan."""

    model_config = STRICT
    name: Annotated[str, Field(max_length=MAX_NAME_CHARS), *LINE]
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS), *TEXT] = ""


class SectionsEdit(BaseModel):
    """A person's plan: ``{"sections": [{"name": ..., "description": ...}, ...]}``."""

    model_config = STRICT
    sections: list[SectionEdit] = Field(min_length=1, max_length=MAX_SECTIONS_LIMIT)


def decide_sections(
    value: Any, planned: list[PlannedSection], max_sections: int
) -> Outcome[PlannedSection]:
    """The article plan a resume ``value`` decides on, held to 1..``max_sections`` sections.

    Raises:
        InvalidDecisionError: ``value`` is not a valid decision.
    """
    decision = parse_decision(value, SectionsEdit)
    plan: list[PlannedSection] = []
    if isinstance(decision, SectionsEdit):
        if len(decision.sections) > max_sections:
            raise InvalidDecisionError(
                f"invalid decision on the plan: sections: {len(decision.sections)} sections; "
                f"at most {max_sections} are allowed (max_sections)"
            )
        plan = [PlannedSection(name=s.name, description=s.description) for s in decision.sections]
    return outcome(decision, planned, plan)
