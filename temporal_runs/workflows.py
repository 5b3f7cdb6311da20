"""One Temporal workflow per graph: the graph runs here, its LLM nodes as activities.

The workflow id is the run's thread id. Bad input or settings fail the run at once (before
any activity); an activity that failed for good fails it with the activity's error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel
    from temporalio.langgraph import graph as registered_graph

    from state.article import ArticleInput
    from state.context import ConfigurationError, Context
    from state.evaluation import EvaluationInput
    from state.inputs import parse_input
    from state.research import ResearchInput
    from temporal_runs.policy import non_retryable


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
        self.context: Context | None = None  # read by temporal_runs.policy for timeouts

    async def _run(self, request: RunRequest) -> dict[str, Any]:
        try:
            self.context = Context.of(request.context)
            if self.context.review_plan:  # an interrupt here would end the run paused, unseen
                raise ConfigurationError(
                    "review_plan is not available on Temporal runs: review the plan in a local "
                    "run (fanout ... --review) or over the langgraph dev API"
                )
            parse_input(self.input_model, request.input)
        except Exception as exc:  # bad settings or input: fail the run, never retry its task
            raise non_retryable(exc) from exc
        workflow.logger.info("running %s", self.graph_name)
        runnable = registered_graph(self.graph_name).compile(name=self.graph_name)
        output: dict[str, Any] = await runnable.ainvoke(request.input, context=self.context)
        return output


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
