"""Nodes of the evaluation graph: three evaluators, one criterion each, and the aggregator."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from langgraph_fanout.llm.call import call_model, messages
from nodes.prompts import (
    AGGREGATOR_SYSTEM,
    AGGREGATOR_USER,
    CRITERIA,
    EVALUATOR_SYSTEM,
    EVALUATOR_USER,
)
from nodes.spending import deferred_work
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


async def evaluate_safety(state: EvaluationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Branch: does the text promote harm, illegal or dangerous acts, hate?"""
    return await evaluate(state, runtime, "safety")


async def evaluate_tone(state: EvaluationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Branch: is the language respectful, free of profanity and graphic content?"""
    return await evaluate(state, runtime, "tone")


async def evaluate_audience_fit(
    state: EvaluationState, runtime: Runtime[Context]
) -> dict[str, Any]:
    """Branch: can readers of every age and background read it?"""
    return await evaluate(state, runtime, "audience_fit")


async def evaluate(
    state: EvaluationState, runtime: Runtime[Context], criterion: str
) -> dict[str, Any]:
    """Judge the text on ``criterion`` alone: the body of every evaluation branch."""
    context = Context.of(runtime.context)
    text = parse_input(EvaluationInput, state).text
    prompt = messages(
        EVALUATOR_SYSTEM.format(criterion=CRITERIA[criterion]), EVALUATOR_USER.format(text=text)
    )
    verdict = await call_model(
        context, "evaluator", prompt, Verdict, labels={"criterion": criterion}
    )
    evaluation = Evaluation(
        evaluator=criterion, explanation=verdict.explanation, is_appropriate=verdict.is_appropriate
    )
    return {"verdicts": [evaluation]}


async def after_spending_check(state: EvaluationState) -> list[Send | str] | str:
    """The branches a spending limit held back (to start on resume), else the aggregator."""
    return deferred_work(state) or "aggregate"


async def aggregate(state: EvaluationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The aggregator: summarize the branches' verdicts and make the final call."""
    context = Context.of(runtime.context)
    evaluations = in_branch_order(state["verdicts"])
    votes = sum(e["is_appropriate"] for e in evaluations)
    listing = "\n".join(
        f"- {e['evaluator']}: {'appropriate' if e['is_appropriate'] else 'NOT appropriate'}"
        f" - {e['explanation']}"
        for e in evaluations
    )
    prompt = messages(
        AGGREGATOR_SYSTEM,
        AGGREGATOR_USER.format(votes=votes, total=len(evaluations), evaluations=listing),
    )
    verdict = await call_model(context, "aggregator", prompt, AggregatedVerdict)
    return {
        "evaluations": evaluations,
        "votes": votes,
        "summary": verdict.summary,
        "is_appropriate": verdict.is_appropriate,
        "verdicts": Overwrite([]),  # consumed: a later run on this thread starts clean
    }


def in_branch_order(verdicts: list[Evaluation]) -> list[Evaluation]:
    """The latest verdict of each branch, in branch order."""
    latest = {v["evaluator"]: v for v in verdicts}
    return [latest[criterion] for criterion in CRITERIA if criterion in latest]
