"""Nodes of the article graph: plan sections, write each one, join them in plan order."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from nodes.llm import call_model, messages
from nodes.plans import fit_plan
from nodes.prompts import (
    ORCHESTRATOR_SYSTEM,
    ORCHESTRATOR_USER,
    SECTION_WRITER_SYSTEM,
    SECTION_WRITER_USER,
)
from state.article import (
    ArticleInput,
    ArticleState,
    CompletedSection,
    PlannedSection,
    Sections,
    SectionTask,
)
from state.context import Context
from state.inputs import parse_input


async def plan_sections(state: ArticleState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The orchestrator: plan the article's sections, at most ``max_sections`` of them."""
    context = Context.of(runtime.context)
    topic = parse_input(ArticleInput, state).topic
    prompt = messages(
        ORCHESTRATOR_SYSTEM.format(max_sections=context.max_sections),
        ORCHESTRATOR_USER.format(topic=topic),
    )
    plan = await call_model(context, "planner", prompt, Sections)
    sections = [
        PlannedSection(name=s.name.strip(), description=s.description.strip())
        for s in plan.sections
        if s.name.strip()
    ]
    return {
        "topic": topic,
        "sections": fit_plan(sections, what="sections", minimum=1, maximum=context.max_sections),
        "completed_sections": Overwrite([]),  # a new plan starts a new article
    }


async def assign_sections(state: ArticleState) -> list[Send]:
    """One ``write_section`` worker per planned section, in plan order."""
    return [
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


async def synthesize_article(state: ArticleState) -> dict[str, Any]:
    """The synthesizer: join the written sections into one Markdown article, in plan order."""
    parts = [f"# {state['topic']}"]
    parts += [f"## {s['name']}\n\n{s['content']}" for s in state["completed_sections"]]
    return {"article": "\n\n".join(parts)}
