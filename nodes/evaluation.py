"""Nodes of the evaluation graph: one evaluator per criterion, then the aggregator."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage
from langgraph._internal._runnable import RunnableCallable
from langgraph.types import Overwrite

from nodes.llm import llm_node, messages
from nodes.prompts import (
    AGGREGATOR_SYSTEM,
    AGGREGATOR_USER,
    CRITERIA,
    EVALUATOR_SYSTEM,
    EVALUATOR_USER,
)
from state.context import Context
from state.evaluation import (
    AggregatedVerdict,
    Evaluation,
    EvaluationInput,
    EvaluationState,
    Verdict,
)
from state.inputs import parse_input

BRANCHES = {f"evaluate_{criterion}": criterion for criterion in CRITERIA}
"""Node name of each evaluation branch -> the criterion it judges, in branch order."""


def evaluator(node: str) -> RunnableCallable:
    """The evaluation branch ``node``: judges the text on its criterion only."""
    name = BRANCHES[node]

    def prompt(state: EvaluationState, context: Context) -> list[BaseMessage]:
        text = parse_input(EvaluationInput, state).text
        return messages(
            EVALUATOR_SYSTEM.format(criterion=CRITERIA[name]), EVALUATOR_USER.format(text=text)
        )

    def update(state: EvaluationState, verdict: Verdict, context: Context) -> dict[str, Any]:
        evaluation = Evaluation(
            evaluator=name, explanation=verdict.explanation, is_appropriate=verdict.is_appropriate
        )
        return {"verdicts": [evaluation]}

    return llm_node(
        node,
        role="evaluator",
        schema=Verdict,
        prompt=prompt,
        update=update,
        describe=lambda state: {"criterion": name},
    )


def in_branch_order(verdicts: list[Evaluation]) -> list[Evaluation]:
    """The latest verdict of each branch, in branch order."""
    latest = {v["evaluator"]: v for v in verdicts}
    return [latest[name] for name in BRANCHES.values() if name in latest]


def _aggregate_prompt(state: EvaluationState, context: Context) -> list[BaseMessage]:
    evaluations = in_branch_order(state["verdicts"])
    listing = "\n".join(
        f"- {e['evaluator']}: {'appropriate' if e['is_appropriate'] else 'NOT appropriate'}"
        f" - {e['explanation']}"
        for e in evaluations
    )
    votes = sum(e["is_appropriate"] for e in evaluations)
    user = AGGREGATOR_USER.format(votes=votes, total=len(evaluations), evaluations=listing)
    return messages(AGGREGATOR_SYSTEM, user)


def _aggregate_update(
    state: EvaluationState, verdict: AggregatedVerdict, context: Context
) -> dict[str, Any]:
    evaluations = in_branch_order(state["verdicts"])
    return {
        "evaluations": evaluations,
        "votes": sum(e["is_appropriate"] for e in evaluations),
        "summary": verdict.summary,
        "is_appropriate": verdict.is_appropriate,
        "verdicts": Overwrite([]),  # consumed: a later run on this thread starts clean
    }


aggregate = llm_node(
    "aggregate",
    role="aggregator",
    schema=AggregatedVerdict,
    prompt=_aggregate_prompt,
    update=_aggregate_update,
)
