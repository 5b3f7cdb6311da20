"""Schemas of the orchestrator-workers article graph."""

from __future__ import annotations

import operator
from typing import Annotated

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from state.inputs import MAX_TOPIC_CHARS, Topic


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

    sections: list[Section] = Field(description="The sections of the article, in order.")


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
    article: Annotated[str, Field(description="The whole article as Markdown.")]


class ArticleState(TypedDict, total=False):
    """Internal state of the article graph."""

    topic: str
    sections: list[PlannedSection]
    completed_sections: Annotated[list[CompletedSection], operator.add]
    article: str


class SectionTask(TypedDict):
    """What ``Send`` hands one section writer."""

    topic: str
    section: PlannedSection
