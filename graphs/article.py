"""Orchestrator-workers: plan sections, write them in parallel with ``Send``, join in order."""

from langgraph.graph import END, START, StateGraph

from nodes.article import assign_sections, plan_sections, synthesize_article, write_section
from nodes.retry import LLM_RETRY
from state.article import ArticleInput, ArticleOutput, ArticleState
from state.context import Context

builder = StateGraph(
    ArticleState,
    context_schema=Context,
    input_schema=ArticleInput,
    output_schema=ArticleOutput,
)
builder.add_node("plan_sections", plan_sections, retry_policy=LLM_RETRY)
builder.add_node("write_section", write_section, retry_policy=LLM_RETRY)
builder.add_node(synthesize_article)
builder.add_edge(START, "plan_sections")
builder.add_conditional_edges("plan_sections", assign_sections, ["write_section"])
builder.add_edge("write_section", "synthesize_article")
builder.add_edge("synthesize_article", END)

graph = builder.compile(name="article")
