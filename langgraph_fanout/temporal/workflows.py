"""The Temporal workflow of every graph: the graph runs here, its LLM nodes as activities.

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

Under a spending limit the workflow admits every LLM call of its activities
(:meth:`GraphWorkflow.admit_call`, ``spending.py``); at the limit the run pauses (memo
``status: at limit``, :meth:`GraphWorkflow.spending_pause`) until
:meth:`GraphWorkflow.raise_limits` raises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from langsmith import tracing_context
    from temporalio.langgraph import graph as registered_graph

    from langgraph_fanout.llm.spending import limit_reached
    from langgraph_fanout.temporal.policy import non_retryable
    from langgraph_fanout.temporal.spending import check_temporal_limits
    from langgraph_fanout.workflows import WORKFLOWS, Workflow
    from state.context import ConfigurationError, Context
    from state.inputs import parse_input
    from state.review import Review
    from state.spending import NOTHING_SPENT, Spent, add_spent, counts, is_spending_pause

STATUS = "status"
"""The memo key that says whether a run is ``running`` or ``paused`` at its plan review."""


@dataclass
class RunRequest:
    """A workflow's argument: the graph's input and the run's settings (``Context`` fields).

    ``reuse``: the finished activities of the run this one was moved from (``moves.py``), each
    ``{"key": ..., "output": ...}``: taken in place of an activity with the same key.
    """

    input: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)
    reuse: list[dict[str, Any]] = field(default_factory=list)


@workflow.defn(dynamic=True)
class GraphWorkflow:
    """Runs the graph its workflow type names (registered with the plugin under that name).

    One dynamic workflow serves every graph of :data:`langgraph_fanout.workflows.WORKFLOWS`:
    the type a run is started with (``"research"``) picks the graph; an unknown type fails the
    run at once.
    """

    def __init__(self) -> None:
        self.definition: Workflow | None = None  # the graph's entry, once the run has started
        self.context: Context | None = None  # read by langgraph_fanout.temporal.policy for timeouts
        self.reuse: dict[str, Any] = {}  # finished activities of a moved run's old run, by key
        self.paused: dict[str, Any] | None = None  # the plan, while waiting for a review
        self.decision: Any = None  # the review's decision, until the graph takes it
        self.reviews = 0  # decisions taken so far
        self.spent: Spent = NOTHING_SPENT  # LLM calls admitted, tokens used
        self.at_limit: dict[str, Any] | None = None  # the spending pause, while at a limit
        self.raises = 0  # times the limits were raised

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> dict[str, Any]:
        """Run the graph of the workflow type on the :class:`RunRequest` in ``args``."""
        try:
            self.definition = definition = definition_of(workflow.info().workflow_type)
            request = workflow.payload_converter().from_payload(args[0].payload, RunRequest)
            self.context = Context.of(request.context)
            self.reuse = {done["key"]: done["output"] for done in request.reuse}
            definition.check_settings(self.context)
            check_temporal_limits(self.context)
            parse_input(definition.input_model, request.input)
        except Exception as exc:  # bad settings or input: fail the run, never retry its task
            raise non_retryable(exc) from exc
        name = definition.name
        workflow.logger.info("running %s", name)
        pauses = self.context.review_plan or self.context.has_limits()  # an interrupt needs
        runnable = registered_graph(name).compile(  # a checkpointer
            name=name, checkpointer=InMemorySaver() if pauses else None
        )
        config = RunnableConfig(configurable={"thread_id": workflow.info().workflow_id})
        run_input: dict[str, Any] | Command = request.input
        while True:
            # The graph's run is the trace's root, as in-process (Temporal's LangSmith plugin
            # would give it a parent it never sends); replays post it again (docs/temporal.md).
            with tracing_context(parent=False):
                result = await runnable.ainvoke(
                    run_input, config, context=self.context, version="v2"
                )
            if not result.interrupts:
                output: dict[str, Any] = result.value
                return output
            if is_spending_pause(value := result.interrupts[0].value):
                run_input = await self._at_limit(value)
                continue
            self.paused = value
            workflow.upsert_memo({STATUS: "paused"})
            await workflow.wait_condition(lambda: self.decision is not None)
            run_input = Command(resume=self.decision)
            self.paused, self.decision = None, None
            self.reviews += 1
            workflow.upsert_memo({STATUS: "running"})

    async def _at_limit(self, pause: dict[str, Any]) -> Command:
        """Wait at a spending limit until the limits are raised; the resume that goes on."""
        assert self.context is not None
        if limit_reached(self.context, self.spent) is None:  # raised before the pause
            return Command(resume=True)
        limits = self.context.limits_set()
        self.at_limit = {**pause, "spent": counts(self.spent), "limits": limits}
        workflow.upsert_memo({STATUS: "at limit"})
        raises = self.raises
        await workflow.wait_condition(lambda: self.raises > raises)
        self.at_limit = None
        workflow.upsert_memo({STATUS: "running"})
        return Command(resume=True)

    @workflow.update
    def admit_call(self) -> dict[str, Any]:
        """Count one LLM call an activity of the run is about to make, or refuse it."""
        assert self.context is not None  # activities run once the run has started
        if (reached := limit_reached(self.context, self.spent)) is not None:
            return {"admitted": False, "limit": reached, "spent": counts(self.spent)}
        self.spent = add_spent(self.spent, Spent(llm_calls=1, total_tokens=0))
        return {"admitted": True}

    @workflow.signal
    def used_tokens(self, tokens: int) -> None:
        """Count the tokens of an LLM call that finished."""
        self.spent = add_spent(self.spent, Spent(llm_calls=0, total_tokens=tokens))

    @workflow.update
    def raise_limits(self, limits: dict[str, int]) -> dict[str, Any]:
        """Take new spending limits; a run paused at a limit goes on (or pauses again)."""
        self.context = self._with_limits(limits)
        self.raises += 1
        return {"limits": self.context.limits(), "spent": counts(self.spent)}

    @raise_limits.validator
    def check_limits(self, limits: dict[str, int]) -> None:
        """Refuse limits the run's settings would refuse."""
        self._with_limits(limits)

    def _with_limits(self, limits: dict[str, int]) -> Context:
        if self.context is None or not self.context.has_limits():
            raise ValueError("the run was started without spending limits: none to raise")
        if unknown := set(limits) - set(self.context.limits()):
            raise ValueError(f"not a spending limit: {', '.join(sorted(unknown))}")
        raised = Context.of({**asdict(self.context), **limits})
        check_temporal_limits(raised)
        return raised

    @workflow.query
    def spending_pause(self) -> dict[str, Any] | None:
        """What the run spent and what did not start, while it waits at a limit (else None)."""
        return self.at_limit

    @workflow.query
    def pending_review(self) -> dict[str, Any] | None:
        """The plan the run waits on a review of (None when it is not paused)."""
        return self.paused

    @workflow.update
    async def review(self, decision: Any) -> Review:
        """Take a decision on the paused run's plan; what became of the review."""
        assert self.paused is not None and self.context is not None  # the validator checked
        assert self.definition is not None and self.definition.plan is not None
        outcome = self.definition.plan.decide(decision, self.paused, self.context)
        self.decision = decision
        taken = self.reviews
        await workflow.wait_condition(lambda: self.reviews > taken)
        return outcome.review

    @review.validator
    def check_review(self, decision: Any) -> None:
        """Refuse a decision the graph's review would refuse, or one with nothing to decide."""
        plan = self.definition.plan if self.definition is not None else None
        if plan is None or self.paused is None or self.decision is not None:
            raise ValueError("the run is not waiting for a plan review")
        assert self.context is not None
        plan.decide(decision, self.paused, self.context)


def definition_of(workflow_type: str) -> Workflow:
    """The graph a run of ``workflow_type`` runs.

    Raises:
        ConfigurationError: no graph has that name.
    """
    if workflow_type not in WORKFLOWS:
        raise ConfigurationError(
            f"no graph named {workflow_type!r} (workflow types: {', '.join(sorted(WORKFLOWS))})"
        )
    return WORKFLOWS[workflow_type]
