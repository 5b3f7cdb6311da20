"""Durable research report: plan questions, research them in parallel, write the report."""

from langgraph.graph import END, START, StateGraph

from nodes.research import assign_questions, plan_research, research_question, write_report
from nodes.retry import LLM_RETRY
from state.context import Context
from state.research import ResearchInput, ResearchOutput, ResearchState

builder = StateGraph(
    ResearchState,
    context_schema=Context,
    input_schema=ResearchInput,
    output_schema=ResearchOutput,
)
builder.add_node("plan_research", plan_research, retry_policy=LLM_RETRY)
builder.add_node("research_question", research_question, retry_policy=LLM_RETRY)
builder.add_node("write_report", write_report, retry_policy=LLM_RETRY)
builder.add_edge(START, "plan_research")
builder.add_conditional_edges("plan_research", assign_questions, ["research_question"])
builder.add_edge("research_question", "write_report")
builder.add_edge("write_report", END)

graph = builder.compile(name="research")
