"""Nodes of the research graph: plan questions, research each one, write the report."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.types import Overwrite, Send

from nodes.llm import llm_node, messages
from nodes.plans import fit_plan
from nodes.prompts import (
    PLANNER_SYSTEM,
    PLANNER_USER,
    REPORT_WRITER_SYSTEM,
    REPORT_WRITER_USER,
    RESEARCHER_SYSTEM,
    RESEARCHER_USER,
)
from state.context import Context
from state.inputs import parse_input
from state.research import (
    MAX_QUESTIONS,
    MIN_QUESTIONS,
    QuestionTask,
    ResearchInput,
    ResearchPlan,
    ResearchState,
)


def _plan_prompt(state: ResearchState, context: Context) -> list[BaseMessage]:
    topic = parse_input(ResearchInput, state).topic
    system = PLANNER_SYSTEM.format(min_questions=MIN_QUESTIONS, max_questions=MAX_QUESTIONS)
    return messages(system, PLANNER_USER.format(topic=topic))


def _plan_update(state: ResearchState, plan: ResearchPlan, context: Context) -> dict[str, Any]:
    questions = list(dict.fromkeys(q.strip() for q in plan.questions if q.strip()))
    return {
        "topic": parse_input(ResearchInput, state).topic,
        "questions": fit_plan(
            questions,
            node="plan_research",
            what="distinct questions",
            minimum=MIN_QUESTIONS,
            maximum=MAX_QUESTIONS,
        ),
        "findings": Overwrite([]),  # a new plan starts a new report
    }


plan_research = llm_node(
    "plan_research", role="planner", schema=ResearchPlan, prompt=_plan_prompt, update=_plan_update
)


def assign_questions(state: ResearchState) -> list[Send]:
    """One ``research_question`` worker per planned question, in plan order."""
    return [
        Send("research_question", QuestionTask(topic=state["topic"], question=question))
        for question in state["questions"]
    ]


def _research_prompt(task: QuestionTask, context: Context) -> list[BaseMessage]:
    return messages(RESEARCHER_SYSTEM, RESEARCHER_USER.format(**task))


def _research_update(task: QuestionTask, answer: str, context: Context) -> dict[str, Any]:
    return {"findings": [{"question": task["question"], "answer": answer}]}


research_question = llm_node(
    "research_question",
    role="worker",
    prompt=_research_prompt,
    update=_research_update,
    describe=lambda task: {"question": task["question"]},
)


def _report_prompt(state: ResearchState, context: Context) -> list[BaseMessage]:
    findings = json.dumps(state["findings"], indent=2, ensure_ascii=False)
    return messages(
        REPORT_WRITER_SYSTEM, REPORT_WRITER_USER.format(topic=state["topic"], findings=findings)
    )


def _report_update(state: ResearchState, report: str, context: Context) -> dict[str, Any]:
    return {"report": report, "task_count": len(state["findings"])}


write_report = llm_node("write_report", role="writer", prompt=_report_prompt, update=_report_update)
