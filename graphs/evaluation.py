"""Parallelization: three evaluators judge one text at once; an aggregator makes the call."""

from langgraph.graph import END, START

from graphs.checked import CheckedStateGraph
from graphs.placement import IN_PROCESS, Placement
from nodes.evaluation import aggregate, evaluate_audience_fit, evaluate_safety, evaluate_tone
from state.context import Context
from state.evaluation import EvaluationInput, EvaluationOutput, EvaluationState


def build(placement: Placement = IN_PROCESS) -> CheckedStateGraph:
    """START -> three evaluation branches at once -> aggregate -> END."""
    builder = CheckedStateGraph(
        EvaluationState,
        context_schema=Context,
        input_schema=EvaluationInput,
        output_schema=EvaluationOutput,
    )
    placement.add_llm_node(builder, evaluate_safety)
    placement.add_llm_node(builder, evaluate_tone)
    placement.add_llm_node(builder, evaluate_audience_fit)
    placement.add_llm_node(builder, aggregate)
    builder.add_edge(START, "evaluate_safety")
    builder.add_edge(START, "evaluate_tone")
    builder.add_edge(START, "evaluate_audience_fit")
    builder.add_edge(["evaluate_safety", "evaluate_tone", "evaluate_audience_fit"], "aggregate")
    builder.add_edge("aggregate", END)
    return builder


builder = build()
graph = builder.compile(name="evaluation")
