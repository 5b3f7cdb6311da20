"""Orchestrator-workers: plan sections, write them in parallel with ``Send``, join in order."""

from langgraph.graph import END, START

from langgraph_fanout.checked_graph import CheckedStateGraph
from langgraph_fanout.placement import IN_PROCESS, Placement
from nodes.article import (
    after_spending_check,
    assign_sections,
    plan_sections,
    review_sections,
    synthesize_article,
    write_section,
)
from nodes.spending import check_spending
from state.article import ArticleInput, ArticleOutput, ArticleState
from state.context import Context


def build(placement: Placement = IN_PROCESS) -> CheckedStateGraph:
    """START -> plan_sections -> one write_section per section (Send) -> synthesize -> END.

    With ``Context.review_plan``, review_sections comes between the plan and the writers, and
    may end the run (a rejected plan). check_spending pauses the run when a spending limit
    held writers back, and sends them again on resume.
    """
    builder = CheckedStateGraph(
        ArticleState,
        context_schema=Context,
        input_schema=ArticleInput,
        output_schema=ArticleOutput,
    )
    placement.add_llm_node(builder, plan_sections)
    placement.add_step(builder, review_sections)
    placement.add_worker_node(builder, write_section)
    placement.add_step(builder, check_spending)
    placement.add_step(builder, synthesize_article)
    builder.add_edge(START, "plan_sections")
    builder.add_conditional_edges(
        "plan_sections", placement.router(assign_sections), ["review_sections", "write_section"]
    )
    builder.add_conditional_edges(
        "review_sections",
        placement.router(assign_sections),
        ["review_sections", "write_section", END],
    )
    builder.add_edge("write_section", "check_spending")
    builder.add_conditional_edges(
        "check_spending",
        placement.router(after_spending_check),
        ["write_section", "synthesize_article"],
    )
    builder.add_edge("synthesize_article", END)
    return builder


builder = build()
graph = builder.compile(name="article")
