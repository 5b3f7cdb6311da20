"""Durable research report: plan questions, research them in parallel, write the report."""

from langgraph.graph import END, START

from langgraph_fanout.checked_graph import CheckedStateGraph
from langgraph_fanout.placement import IN_PROCESS, Placement
from nodes.research import (
    after_spending_check,
    assign_questions,
    plan_research,
    research_question,
    review_questions,
    write_report,
)
from nodes.spending import check_spending
from state.context import Context
from state.research import ResearchInput, ResearchOutput, ResearchState


def build(placement: Placement = IN_PROCESS) -> CheckedStateGraph:
    """START -> plan_research -> one research_question per question (Send) -> write_report.

    With ``Context.review_plan``, review_questions comes between the plan and the
    researchers, and may end the run (a rejected plan). check_spending pauses the run when a
    spending limit held researchers back, and sends them again on resume.
    """
    builder = CheckedStateGraph(
        ResearchState,
        context_schema=Context,
        input_schema=ResearchInput,
        output_schema=ResearchOutput,
    )
    placement.add_llm_node(builder, plan_research)
    placement.add_step(builder, review_questions)
    placement.add_worker_node(builder, research_question)
    placement.add_step(builder, check_spending)
    placement.add_llm_node(builder, write_report)
    builder.add_edge(START, "plan_research")
    builder.add_conditional_edges(
        "plan_research",
        placement.router(assign_questions),
        ["review_questions", "research_question"],
    )
    builder.add_conditional_edges(
        "review_questions",
        placement.router(assign_questions),
        ["review_questions", "research_question", END],
    )
    builder.add_edge("research_question", "check_spending")
    builder.add_conditional_edges(
        "check_spending",
        placement.router(after_spending_check),
        ["research_question", "write_report"],
    )
    builder.add_edge("write_report", END)
    return builder


builder = build()
graph = builder.compile(name="research")
