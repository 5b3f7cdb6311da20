"""Parallelization: fixed evaluators judge one text at once; an aggregator makes the call."""

from langgraph.graph import END, START, StateGraph

from nodes.evaluation import BRANCHES, aggregate, evaluator
from nodes.retry import LLM_RETRY
from state.context import Context
from state.evaluation import EvaluationInput, EvaluationOutput, EvaluationState

builder = StateGraph(
    EvaluationState,
    context_schema=Context,
    input_schema=EvaluationInput,
    output_schema=EvaluationOutput,
)
for branch in BRANCHES:
    builder.add_node(branch, evaluator(branch), retry_policy=LLM_RETRY)
    builder.add_edge(START, branch)
builder.add_node("aggregate", aggregate, retry_policy=LLM_RETRY)
builder.add_edge(list(BRANCHES), "aggregate")
builder.add_edge("aggregate", END)

graph = builder.compile(name="evaluation")
