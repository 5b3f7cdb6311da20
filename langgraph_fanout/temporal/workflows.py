"""One Temporal workflow per graph: the graph runs here, its LLM nodes as activities.

The workflow id is the run's thread id. Bad input or settings fail the run at once (before
any activity); an activity that failed for good fails it with the activity's error.

With ``Context.review_plan`` the graph pauses after planning, as in-process: the workflow
then waits, for as long as it takes, for a :meth:`GraphWorkflow.review` update carrying a
decision of the shapes an in-process resume takes (the plan, ``{"approve": true}``,
``{"reject": true}``). The update is checked with the graph's own rule before it is taken,
so an invalid decision is refused to its sender and the run stays paused. The pause lives in
the workflow's history: it survives restarts of workers and of the server. While paused, the
run's memo says ``status: paused`` and the :meth:`GraphWorkflow.pending_review` query returns
the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from pydantic import BaseModel
    from temporalio.langgraph import graph as registered_graph

    from langgraph_fanout.temporal.policy import non_retryable
    from state.article import ArticleInput
    from state.context import ConfigurationError, Context
    from state.decisions import PLAN_KEYS, check_decision
    from state.evaluation import EvaluationInput
    from state.inputs import parse_input
    from state.research import ResearchInput
    from state.review import Review

STATUS = "status"
"""The memo key that says whether a run is ``running`` or ``paused`` at its plan review."""


@dataclass
class RunRequest:
    """A workflow's argument: the graph's input and the run's settings (``Context`` fields)."""

    input: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)


class GraphWorkflow:
    """Runs the graph registered as ``graph_name`` with the plugin."""

    graph_name = ""
    input_model: type[BaseModel]

    def __init__(self) -> None:
        self.context: Context | None = None  # read by langgraph_fanout.temporal.policy for timeouts
        self.paused: dict[str, Any] | None = None  # the plan, while waiting for a review
        self.decision: Any = None  # the review's decision, until the graph takes it
        self.reviews = 0  # decisions taken so far

    async def _run(self, request: RunRequest) -> dict[str, Any]:
        try:
            self.context = Context.of(request.context)
            if self.context.review_plan and self.graph_name not in PLAN_KEYS:
                raise ConfigurationError(f"{self.graph_name} runs have no plan to review")
            parse_input(self.input_model, request.input)
        except Exception as exc:  # bad settings or input: fail the run, never retry its task
            raise non_retryable(exc) from exc
        workflow.logger.info("running %s", self.graph_name)
        reviewed = self.context.review_plan  # an interrupt needs a checkpointer
        runnable = registered_graph(self.graph_name).compile(
            name=self.graph_name, checkpointer=InMemorySaver() if reviewed else None
        )
        config = RunnableConfig(configurable={"thread_id": workflow.info().workflow_id})
        run_input: dict[str, Any] | Command = request.input
        while True:
            result = await runnable.ainvoke(run_input, config, context=self.context, version="v2")
            if not result.interrupts:
                output: dict[str, Any] = result.value
                return output
            self.paused = result.interrupts[0].value
            workflow.upsert_memo({STATUS: "paused"})
            await workflow.wait_condition(lambda: self.decision is not None)
            run_input = Command(resume=self.decision)
            self.paused, self.decision = None, None
            self.reviews += 1
            workflow.upsert_memo({STATUS: "running"})

    @workflow.query
    def pending_review(self) -> dict[str, Any] | None:
        """The plan the run waits on a review of (None when it is not paused)."""
        return self.paused

    @workflow.update
    async def review(self, decision: Any) -> Review:
        """Take a decision on the paused run's plan; what became of the review."""
        assert self.paused is not None and self.context is not None  # the validator checked
        outcome = check_decision(self.graph_name, self.context, decision, self.paused)
        self.decision = decision
        taken = self.reviews
        await workflow.wait_condition(lambda: self.reviews > taken)
        return outcome.review

    @review.validator
    def check_review(self, decision: Any) -> None:
        """Refuse a decision the graph's review would refuse, or one with nothing to decide."""
        if self.paused is None or self.decision is not None or self.context is None:
            raise ValueError("the run is not waiting for a plan review")
        check_decision(self.graph_name, self.context, decision, self.paused)


@workflow.defn(name="evaluation")
class EvaluationWorkflow(GraphWorkflow):
    """The evaluation graph: three evaluators at once, then the aggregator."""

    graph_name = "evaluation"
    input_model = EvaluationInput

    @workflow.run
    async def run(self, request: RunRequest) -> dict[str, Any]:
        """Evaluate ``request.input["text"]``."""
        return await self._run(request)


@workflow.defn(name="article")
class ArticleWorkflow(GraphWorkflow):
    """The article graph: plan sections, one writer activity per section, join."""

    graph_name = "article"
    input_model = ArticleInput

    @workflow.run
    async def run(self, request: RunRequest) -> dict[str, Any]:
        """Write an article on ``request.input["topic"]``."""
        return await self._run(request)


@workflow.defn(name="research")
class ResearchWorkflow(GraphWorkflow):
    """The research graph: plan questions, one researcher activity each, write the report."""

    graph_name = "research"
    input_model = ResearchInput

    @workflow.run
    async def run(self, request: RunRequest) -> dict[str, Any]:
        """Research ``request.input["topic"]``."""
        return await self._run(request)


WORKFLOWS: dict[str, type[GraphWorkflow]] = {
    "evaluation": EvaluationWorkflow,
    "article": ArticleWorkflow,
    "research": ResearchWorkflow,
}
"""Workflow classes by graph name (the name is also the Temporal workflow type)."""
