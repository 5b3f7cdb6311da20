"""Nodes of the article graph: plan sections, write each one, join them in plan order."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from langgraph_fanout.llm.call import call_model, messages
from langgraph_fanout.workflows import ARTICLE_PLAN
from nodes.plans import clean_text, fit_plan, visible
from nodes.prompts import (
    ORCHESTRATOR_SYSTEM,
    ORCHESTRATOR_USER,
    SECTION_WRITER_SYSTEM,
    SECTION_WRITER_USER,
)
from nodes.review import after_review, review_plan
from nodes.spending import deferred_work, in_plan_order
from state.article import (
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    ArticleInput,
    ArticleState,
    CompletedSection,
    LocalSections,
    PlannedSection,
    Sections,
    SectionTask,
)
from state.context import Context
from state.inputs import parse_input
from state.review import PENDING


async def plan_sections(state: ArticleState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The orchestrator: plan the article's sections, at most ``max_sections`` of them."""
    context = Context.of(runtime.context)
    topic = parse_input(ArticleInput, state).topic
    prompt = messages(
        ORCHESTRATOR_SYSTEM.format(max_sections=context.max_sections),
        ORCHESTRATOR_USER.format(topic=topic),
    )
    plan = await call_model(context, "planner", prompt, Sections, local_schema=LocalSections)
    sections = [
        PlannedSection(
            name=clean_text(s.name, MAX_NAME_CHARS),
            description=clean_text(s.description, MAX_DESCRIPTION_CHARS),
        )
        for s in plan.sections
    ]
    sections = [s for s in sections if visible(s["name"])]
    return {
        "topic": topic,
        "sections": fit_plan(sections, what="sections", minimum=1, maximum=context.max_sections),
        "completed_sections": Overwrite([]),  # a new plan starts a new article
        "review": PENDING if context.review_plan else None,
    }


async def review_sections(state: ArticleState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause until a person runs, edits or rejects the plan (``Context.review_plan``)."""
    return review_plan(ARTICLE_PLAN, state, Context.of(runtime.context))


async def assign_sections(state: ArticleState) -> Literal["review_sections"] | list[Send] | str:
    """One ``write_section`` worker per planned section, in plan order.

    To the plan review while one is pending; END once the plan was rejected.
    """
    return after_review(ARTICLE_PLAN, state) or [
        Send("write_section", SectionTask(topic=state["topic"], section=section))
        for section in state["sections"]
    ]


async def write_section(task: SectionTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """A worker: write the body of one planned section."""
    context = Context.of(runtime.context)
    section = task["section"]
    prompt = messages(
        SECTION_WRITER_SYSTEM,
        SECTION_WRITER_USER.format(
            topic=task["topic"], name=section["name"], description=section["description"]
        ),
    )
    content = await call_model(context, "worker", prompt, labels={"section": section["name"]})
    return {"completed_sections": [CompletedSection(name=section["name"], content=content)]}


async def after_spending_check(state: ArticleState) -> list[Send | str] | str:
    """The writers a spending limit held back (to start on resume), else the synthesizer."""
    return deferred_work(state) or "synthesize_article"


async def synthesize_article(state: ArticleState) -> dict[str, Any]:
    """The synthesizer: join the written sections into one Markdown article, in plan order."""
    planned = [section["name"] for section in state["sections"]]
    in_order = in_plan_order(state["completed_sections"], planned, "name")
    parts = [f"# {state['topic']}"]
    parts += [f"## {s['name']}\n\n{s['content']}" for s in in_order]
    return {"article": "\n\n".join(parts), "completed_sections": Overwrite(in_order)}
