"""Parallelization: fixed evaluators judge one text at once; an aggregator makes the call."""

from langgraph.graph import END, START, StateGraph

from nodes.evaluation import EVALUATORS, aggregate, evaluator
from nodes.retry import LLM_RETRY
from state.context import Context
from state.evaluation import EvaluationInput, EvaluationOutput, EvaluationState

builder = StateGraph(
    EvaluationState,
    context_schema=Context,
    input_schema=EvaluationInput,
    output_schema=EvaluationOutput,
)
branches = [evaluator(name) for name in EVALUATORS]
for branch in branches:
    builder.add_node(branch.name, branch, retry_policy=LLM_RETRY)
    builder.add_edge(START, branch.name)
builder.add_node("aggregate", aggregate, retry_policy=LLM_RETRY)
builder.add_edge([branch.name for branch in branches], "aggregate")
builder.add_edge("aggregate", END)

graph = builder.compile(name="evaluation")
