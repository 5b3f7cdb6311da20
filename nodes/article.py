"""Nodes of the article graph: plan sections, write each one, join them in plan order."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.types import Overwrite, Send

from nodes.llm import llm_node, messages
from nodes.plans import fit_plan
from nodes.prompts import (
    ORCHESTRATOR_SYSTEM,
    ORCHESTRATOR_USER,
    SECTION_WRITER_SYSTEM,
    SECTION_WRITER_USER,
)
from state.article import ArticleInput, ArticleState, PlannedSection, Sections, SectionTask
from state.context import Context
from state.inputs import parse_input


def _plan_prompt(state: ArticleState, context: Context) -> list[BaseMessage]:
    topic = parse_input(ArticleInput, state).topic
    system = ORCHESTRATOR_SYSTEM.format(max_sections=context.max_sections)
    return messages(system, ORCHESTRATOR_USER.format(topic=topic))


def _plan_update(state: ArticleState, plan: Sections, context: Context) -> dict[str, Any]:
    sections = [
        PlannedSection(name=s.name.strip(), description=s.description.strip())
        for s in plan.sections
        if s.name.strip()
    ]
    return {
        "topic": parse_input(ArticleInput, state).topic,
        "sections": fit_plan(
            sections,
            node="plan_sections",
            what="sections",
            minimum=1,
            maximum=context.max_sections,
        ),
        "completed_sections": Overwrite([]),  # a new plan starts a new article
    }


plan_sections = llm_node(
    "plan_sections", role="planner", schema=Sections, prompt=_plan_prompt, update=_plan_update
)


def assign_sections(state: ArticleState) -> list[Send]:
    """One ``write_section`` worker per planned section, in plan order."""
    return [
        Send("write_section", SectionTask(topic=state["topic"], section=section))
        for section in state["sections"]
    ]


def _section_prompt(task: SectionTask, context: Context) -> list[BaseMessage]:
    user = SECTION_WRITER_USER.format(topic=task["topic"], **task["section"])
    return messages(SECTION_WRITER_SYSTEM, user)


def _section_update(task: SectionTask, content: str, context: Context) -> dict[str, Any]:
    return {"completed_sections": [{"name": task["section"]["name"], "content": content}]}


write_section = llm_node(
    "write_section",
    role="worker",
    prompt=_section_prompt,
    update=_section_update,
    describe=lambda task: {"section": task["section"]["name"]},
)


def synthesize_article(state: ArticleState) -> dict[str, Any]:
    """Join the written sections into one Markdown article, in plan order."""
    parts = [f"# {state['topic']}"]
    parts += [f"## {s['name']}\n\n{s['content']}" for s in state["completed_sections"]]
    return {"article": "\n\n".join(parts)}
