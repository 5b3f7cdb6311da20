"""Nodes of the research graph: plan questions, research each one, write the report."""

from __future__ import annotations

import json
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from langgraph_fanout.llm.call import call_model, messages
from langgraph_fanout.workflows import RESEARCH_PLAN
from nodes.plans import clean_text, fit_plan, visible
from nodes.prompts import (
    PLANNER_SYSTEM,
    PLANNER_USER,
    REPORT_WRITER_SYSTEM,
    REPORT_WRITER_USER,
    RESEARCHER_SYSTEM,
    RESEARCHER_USER,
)
from nodes.review import after_review, review_plan
from nodes.spending import deferred_work, in_plan_order
from state.context import Context
from state.inputs import parse_input
from state.research import (
    MAX_QUESTION_CHARS,
    MAX_QUESTIONS,
    MIN_QUESTIONS,
    Finding,
    QuestionTask,
    ResearchInput,
    ResearchPlan,
    ResearchState,
)
from state.review import PENDING


async def plan_research(state: ResearchState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The orchestrator: split the topic into 2-4 distinct research questions."""
    context = Context.of(runtime.context)
    topic = parse_input(ResearchInput, state).topic
    prompt = messages(
        PLANNER_SYSTEM.format(min_questions=MIN_QUESTIONS, max_questions=MAX_QUESTIONS),
        PLANNER_USER.format(topic=topic),
    )
    plan = await call_model(context, "planner", prompt, ResearchPlan)
    cleaned = (clean_text(q, MAX_QUESTION_CHARS) for q in plan.questions)
    questions = list(dict.fromkeys(q for q in cleaned if visible(q)))
    return {
        "topic": topic,
        "questions": fit_plan(
            questions, what="distinct questions", minimum=MIN_QUESTIONS, maximum=MAX_QUESTIONS
        ),
        "findings": Overwrite([]),  # a new plan starts a new report
        "review": PENDING if context.review_plan else None,
    }


async def review_questions(state: ResearchState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause until a person runs, edits or rejects the questions (``Context.review_plan``)."""
    return review_plan(RESEARCH_PLAN, state, Context.of(runtime.context))


async def assign_questions(state: ResearchState) -> Literal["review_questions"] | list[Send] | str:
    """One ``research_question`` worker per planned question, in plan order.

    To the plan review while one is pending; END once the plan was rejected.
    """
    return after_review(RESEARCH_PLAN, state) or [
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


async def after_spending_check(state: ResearchState) -> list[Send | str] | str:
    """The researchers a spending limit held back (to start on resume), else the writer."""
    return deferred_work(state) or "write_report"


async def write_report(state: ResearchState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The writer: combine the findings, in plan order, into one report."""
    context = Context.of(runtime.context)
    # Keys named one by one: the prompt must not depend on how a serializer ordered them.
    in_order = in_plan_order(state["findings"], state["questions"], "question")
    findings = [{"question": f["question"], "answer": f["answer"]} for f in in_order]
    prompt = messages(
        REPORT_WRITER_SYSTEM,
        REPORT_WRITER_USER.format(
            topic=state["topic"], findings=json.dumps(findings, indent=2, ensure_ascii=False)
        ),
    )
    report = await call_model(context, "writer", prompt)
    return {"report": report, "task_count": len(in_order), "findings": Overwrite(in_order)}
