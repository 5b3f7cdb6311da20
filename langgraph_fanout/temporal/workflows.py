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

import types
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from temporalio.langgraph import graph as registered_graph

    from langgraph_fanout.temporal.policy import non_retryable
    from langgraph_fanout.workflows import WORKFLOWS, Workflow
    from state.context import ConfigurationError, Context
    from state.inputs import parse_input
    from state.review import Review

STATUS = "status"
"""The memo key that says whether a run is ``running`` or ``paused`` at its plan review."""


@dataclass
class RunRequest:
    """A workflow's argument: the graph's input and the run's settings (``Context`` fields)."""

    input: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)


class GraphWorkflow:
    """Runs the graph of :attr:`definition` (registered with the plugin under its name)."""

    definition: Workflow

    def __init__(self) -> None:
        self.context: Context | None = None  # read by langgraph_fanout.temporal.policy for timeouts
        self.paused: dict[str, Any] | None = None  # the plan, while waiting for a review
        self.decision: Any = None  # the review's decision, until the graph takes it
        self.reviews = 0  # decisions taken so far

    async def run(self, request: RunRequest) -> dict[str, Any]:
        """Run the graph on ``request``."""
        try:
            self.context = Context.of(request.context)
            if self.context.review_plan and self.definition.plan is None:
                raise ConfigurationError(f"{self.definition.name} runs have no plan to review")
            parse_input(self.definition.input_model, request.input)
        except Exception as exc:  # bad settings or input: fail the run, never retry its task
            raise non_retryable(exc) from exc
        name = self.definition.name
        workflow.logger.info("running %s", name)
        reviewed = self.context.review_plan  # an interrupt needs a checkpointer
        runnable = registered_graph(name).compile(
            name=name, checkpointer=InMemorySaver() if reviewed else None
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
        assert self.definition.plan is not None
        outcome = self.definition.plan.decide(decision, self.paused, self.context)
        self.decision = decision
        taken = self.reviews
        await workflow.wait_condition(lambda: self.reviews > taken)
        return outcome.review

    @review.validator
    def check_review(self, decision: Any) -> None:
        """Refuse a decision the graph's review would refuse, or one with nothing to decide."""
        plan = self.definition.plan
        if plan is None or self.paused is None or self.decision is not None:
            raise ValueError("the run is not waiting for a plan review")
        assert self.context is not None
        plan.decide(decision, self.paused, self.context)


def _workflow_type(definition: Workflow) -> type[GraphWorkflow]:
    """The Temporal workflow of ``definition``: its type is the graph's name.

    Temporal wants each workflow class's run method defined on that class: each gets its own
    copy of :meth:`GraphWorkflow.run`, named for it.
    """
    name = f"{definition.name.title()}Workflow"
    base = GraphWorkflow.run
    run = types.FunctionType(base.__code__, base.__globals__, "run", base.__defaults__)
    run.__qualname__, run.__doc__ = f"{name}.run", base.__doc__
    run.__annotations__ = dict(base.__annotations__)
    body = {"definition": definition, "run": workflow.run(run), "__module__": __name__}
    body["__doc__"] = f"The {definition.name} graph as a Temporal workflow."
    return workflow.defn(name=definition.name)(type(name, (GraphWorkflow,), body))


WORKFLOWS_BY_TYPE: dict[str, type[GraphWorkflow]] = {
    name: _workflow_type(definition) for name, definition in WORKFLOWS.items()
}
"""The workflow classes by type name (the graph's name)."""
globals().update({cls.__name__: cls for cls in WORKFLOWS_BY_TYPE.values()})  # the sandbox
# imports each workflow class from this module by its name
