"""Parallelization: three evaluators judge one text at once; an aggregator makes the call."""

from langgraph.graph import END, START

from langgraph_fanout.checked_graph import CheckedStateGraph
from langgraph_fanout.placement import IN_PROCESS, Placement
from nodes.evaluation import (
    after_spending_check,
    aggregate,
    evaluate_audience_fit,
    evaluate_safety,
    evaluate_tone,
)
from nodes.spending import check_spending
from state.context import Context
from state.evaluation import EvaluationInput, EvaluationOutput, EvaluationState


def build(placement: Placement = IN_PROCESS) -> CheckedStateGraph:
    """START -> three evaluation branches at once -> aggregate -> END.

    check_spending, between the branches and the aggregator, pauses the run when a spending
    limit held branches back, and starts them again on resume.
    """
    builder = CheckedStateGraph(
        EvaluationState,
        context_schema=Context,
        input_schema=EvaluationInput,
        output_schema=EvaluationOutput,
    )
    placement.add_llm_node(builder, evaluate_safety, parallel=True)
    placement.add_llm_node(builder, evaluate_tone, parallel=True)
    placement.add_llm_node(builder, evaluate_audience_fit, parallel=True)
    placement.add_step(builder, check_spending)
    placement.add_llm_node(builder, aggregate)
    names = ["evaluate_safety", "evaluate_tone", "evaluate_audience_fit"]
    for name in names:
        builder.add_edge(START, name)
        builder.add_edge(name, "check_spending")  # not a join: a resume may rerun one alone
    builder.add_conditional_edges(
        "check_spending", placement.router(after_spending_check), [*names, "aggregate"]
    )
    builder.add_edge("aggregate", END)
    return builder


builder = build()
graph = builder.compile(name="evaluation")
