"""Nodes of the research graph: plan questions, research each one, write the report."""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from nodes.llm import call_model, messages
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
    Finding,
    QuestionTask,
    ResearchInput,
    ResearchPlan,
    ResearchState,
)


async def plan_research(state: ResearchState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The orchestrator: split the topic into 2-4 distinct research questions."""
    context = Context.of(runtime.context)
    topic = parse_input(ResearchInput, state).topic
    prompt = messages(
        PLANNER_SYSTEM.format(min_questions=MIN_QUESTIONS, max_questions=MAX_QUESTIONS),
        PLANNER_USER.format(topic=topic),
    )
    plan = await call_model(context, "planner", prompt, ResearchPlan)
    questions = list(dict.fromkeys(q.strip() for q in plan.questions if q.strip()))
    return {
        "topic": topic,
        "questions": fit_plan(
            questions, what="distinct questions", minimum=MIN_QUESTIONS, maximum=MAX_QUESTIONS
        ),
        "findings": Overwrite([]),  # a new plan starts a new report
    }


async def assign_questions(state: ResearchState) -> list[Send]:
    """One ``research_question`` worker per planned question, in plan order."""
    return [
        Send("research_question", QuestionTask(topic=state["topic"], question=question))
        for question in state["questions"]
    ]


async def research_question(task: QuestionTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """A worker: answer one research question."""
    context = Context.of(runtime.context)
    prompt = messages(
        RESEARCHER_SYSTEM,
        RESEARCHER_USER.format(topic=task["topic"], question=task["question"]),
    )
    answer = await call_model(context, "worker", prompt, labels={"question": task["question"]})
    return {"findings": [Finding(question=task["question"], answer=answer)]}


async def write_report(state: ResearchState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The writer: combine the findings, in plan order, into one report."""
    context = Context.of(runtime.context)
    # Keys named one by one: the prompt must not depend on how a serializer ordered them.
    findings = [{"question": f["question"], "answer": f["answer"]} for f in state["findings"]]
    prompt = messages(
        REPORT_WRITER_SYSTEM,
        REPORT_WRITER_USER.format(
            topic=state["topic"], findings=json.dumps(findings, indent=2, ensure_ascii=False)
        ),
    )
    report = await call_model(context, "writer", prompt)
    return {"report": report, "task_count": len(state["findings"])}
