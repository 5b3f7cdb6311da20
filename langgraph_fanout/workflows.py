"""The workflows, one entry each: everything the doors need to know about a graph.

The CLI (its commands, run records, plan review, printed result, progress labels), the
LangGraph API servers (``langgraph_fanout/server/graphs.py``, ``langgraph.json``,
``aegra.json``) and Temporal (one dynamic workflow serves every entry) are derived from
:data:`WORKFLOWS`. docs/development.md, "Adding a workflow", is the recipe; a workflow
outside this package is registered by naming its module in ``$FANOUT_WORKFLOWS``.

Importing this module is cheap (no LangGraph, no LangChain): a graph is built on first use
(:attr:`Workflow.module`), which is also when its module is held to the contract
(:func:`check_graph`); ``python -m langgraph_fanout.workflows`` checks every graph and
rewrites the servers' JSON configs (a test fails while they are stale).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from langgraph_fanout.contract import RegistrationError, check_graph
from state.article import ArticleInput, decide_sections
from state.context import ConfigurationError, Context
from state.evaluation import EvaluationInput
from state.research import MAX_QUESTIONS, MIN_QUESTIONS, ResearchInput, decide_questions
from state.review import Outcome

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

EXTRA_VARIABLE = "FANOUT_WORKFLOWS"
"""Modules (comma-separated) whose ``WORKFLOWS`` tuple adds entries to :data:`WORKFLOWS`."""
ROOT = Path(__file__).resolve().parent.parent
SERVED_FROM = "./langgraph_fanout/server/graphs.py"
"""The module whose attribute ``<name>`` serves a workflow of this package."""
AEGRA_APP = "./langgraph_fanout/server/aegra_app.py:app"
"""Aegra's HTTP app: its routes behind the project's middleware."""


@dataclass(frozen=True)
class Plan:
    """A workflow's plan, which a person may review before the fan-out.

    The plan is the state's list ``key``, paused on in node ``review_node``.
    ``decide(value, plan, context)`` is the rule a review applies to a decision (raising
    ``InvalidDecisionError`` for an invalid one): the review node, the CLI and Temporal's
    validator all apply it. ``rejected`` is the update a rejected plan ends the run with.
    ``items(plan)`` gives each planned item as (heading, detail) for a person to read;
    ``bound(context)`` says how many items a plan may hold, in words; one worker makes one
    LLM call per item.
    """

    key: str
    review_node: str
    noun: str
    decide: Callable[[Any, dict[str, Any], Context], Outcome[Any]]
    items: Callable[[dict[str, Any]], list[tuple[str, str]]]
    bound: Callable[[Context], str]
    rejected: dict[str, Any] = dataclasses.field(default_factory=dict)
    calls_after: int = 0
    """LLM calls the run makes after its workers (the research report's writer)."""


@dataclass(frozen=True)
class Worker:
    """A fan-out worker node (added with ``placement.add_worker_node``, one ``Send`` each).

    ``results``: the state key its update appends to, a ``list`` with a reducer
    (``Annotated[list[T], operator.add]``). ``label(task)``: what one task works on, shown
    in progress views, the Temporal UI and spending pauses.
    """

    node: str
    results: str
    label: Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Workflow:
    """One workflow: its graph, input, model roles, workers, plan, and printed result.

    Its graph module (``graphs.<name>`` unless ``graph_module`` names another) exports
    ``build(placement)``, ``builder = build()`` and ``graph = builder.compile(name=<name>)``.
    ``roles``: the model roles its nodes call (each a ``<role>_model`` setting of
    ``Context``). ``served_from``: the module whose attribute ``<name>`` serves it.
    """

    name: str
    command: str
    description: str
    input_model: type[BaseModel]
    input_field: str
    render: Callable[[dict[str, Any]], str]
    roles: tuple[str, ...]
    workers: tuple[Worker, ...] = ()
    plan: Plan | None = None
    options: tuple[str, ...] = ()
    """``Context`` settings of this workflow's own that ``fanout`` takes as options."""
    graph_module: str = ""
    served_from: str = SERVED_FROM

    def __post_init__(self) -> None:
        """Refuse an entry that cannot work (:class:`RegistrationError`)."""
        fields = {f.name for f in dataclasses.fields(Context)}
        for role in self.roles:
            if f"{role}_model" not in fields:
                raise RegistrationError(
                    f"workflow {self.name!r}: role {role!r} has no setting: add "
                    f'`{role}_model: str = Field(default="", description=...)` to Context '
                    "(state/context.py)"
                )
        for option in self.options:
            if option not in fields:
                raise RegistrationError(
                    f"workflow {self.name!r}: option {option!r} is not a Context setting"
                )

    @cached_property
    def module(self) -> Any:
        """The graph's module, held to the contract on first use (:func:`check_graph`).

        Raises:
            RegistrationError: the module is missing or breaks the contract.
        """
        module_name = self.graph_module or f"graphs.{self.name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            raise RegistrationError(
                f"workflow {self.name!r}: no graph module {module_name!r}: write "
                f"{module_name.replace('.', '/')}.py with build(placement), builder = build() and "
                f"graph = builder.compile(name={self.name!r}), or name its module in the entry's "
                "graph_module"
            ) from None
        check_graph(self, module)
        return module

    @property
    def builder(self) -> StateGraph[Any, Context, Any, Any]:
        """The graph's builder (importing its module builds it)."""
        builder: StateGraph[Any, Context, Any, Any] = self.module.builder
        return builder

    def check_settings(self, context: Context) -> None:
        """Refuse settings this workflow cannot honour, on every runtime.

        Raises:
            ConfigurationError: a plan review is asked of a workflow without a plan.
        """
        if context.review_plan and self.plan is None:
            raise ConfigurationError(f"{self.name} runs have no plan to review")

    def compile(
        self, checkpointer: BaseCheckpointSaver
    ) -> CompiledStateGraph[Any, Context, Any, Any]:
        """The graph, compiled to persist every step and task result in ``checkpointer``."""
        return self.builder.compile(checkpointer=checkpointer, name=self.name)


def _verdict(output: dict[str, Any]) -> str:
    verdict = "appropriate" if output["is_appropriate"] else "NOT appropriate"
    lines = [
        f"{verdict} ({output['votes']}/{len(output['evaluations'])} evaluators vote "
        f"appropriate)\n{output['summary']}\n"
    ]
    for e in output["evaluations"]:
        vote = "yes" if e["is_appropriate"] else "no"
        lines.append(f"- {e['evaluator']}: {vote} - {e['explanation']}")
    return "\n".join(lines)


def _report(output: dict[str, Any]) -> str:
    return f"{output['report']}\n\n({output['task_count']} research questions)"


EVALUATION = Workflow(
    name="evaluation",
    command="evaluate",
    description="Parallelization: three evaluators (safety, tone, audience fit) judge one text "
    'at once; an aggregator makes the final call. Input: {"text": ...}.',
    input_model=EvaluationInput,
    input_field="text",
    render=_verdict,
    roles=("evaluator", "aggregator"),
)
ARTICLE_PLAN = Plan(
    key="sections",
    review_node="review_sections",
    noun="sections",
    decide=lambda value, plan, context: decide_sections(
        value, plan.get("sections", []), context.max_sections
    ),
    items=lambda plan: [(s["name"], s["description"]) for s in plan["sections"]],
    bound=lambda context: f"at most {context.max_sections}",
    rejected={"article": ""},
)
ARTICLE = Workflow(
    name="article",
    command="article",
    description="Orchestrator-workers: plan the sections of a short article, write them in "
    'parallel (one Send per section), join them in plan order. Input: {"topic": ...}.',
    input_model=ArticleInput,
    input_field="topic",
    render=lambda output: str(output["article"]),
    roles=("planner", "worker"),
    workers=(
        Worker(
            node="write_section",
            results="completed_sections",
            label=lambda task: str(task["section"]["name"]),
        ),
    ),
    plan=ARTICLE_PLAN,
    options=("max_sections",),
)
RESEARCH_PLAN = Plan(
    key="questions",
    review_node="review_questions",
    noun="research questions",
    decide=lambda value, plan, context: decide_questions(value, plan.get("questions", [])),
    items=lambda plan: [(question, "") for question in plan["questions"]],
    bound=lambda context: f"{MIN_QUESTIONS} to {MAX_QUESTIONS}",
    rejected={"report": "", "task_count": 0},
    calls_after=1,
)
RESEARCH = Workflow(
    name="research",
    command="research",
    description="Durable research report: plan 2-4 research questions, answer them in parallel "
    '(one Send per question), write the report. Input: {"topic": ...}.',
    input_model=ResearchInput,
    input_field="topic",
    render=_report,
    roles=("planner", "worker", "writer"),
    workers=(
        Worker(node="research_question", results="findings", label=lambda t: str(t["question"])),
    ),
    plan=RESEARCH_PLAN,
)


def task_label(node: str, task: Any) -> str:
    """What a task of ``node`` works on, if ``node`` is a worker (else "").

    Display only: a payload of another shape (a Temporal batch's, a test's) has no label.
    """
    worker = WORKERS.get(node)
    try:
        return worker.label(task) if worker is not None else ""
    except (KeyError, TypeError):
        return ""


def registered(entries: Iterable[Workflow]) -> dict[str, Workflow]:
    """``entries`` by name, with the entries of the modules ``$FANOUT_WORKFLOWS`` names.

    Each such module holds ``WORKFLOWS``, a tuple of :class:`Workflow`.

    Raises:
        RegistrationError: a module cannot be imported or has no ``WORKFLOWS``, or two
            entries share a name, a command or a worker node.
    """
    entries = list(entries)
    for module_name in filter(None, os.environ.get(EXTRA_VARIABLE, "").replace(" ", "").split(",")):
        try:
            extra = importlib.import_module(module_name)
        except ImportError as exc:
            raise RegistrationError(
                f"${EXTRA_VARIABLE}: cannot import {module_name}: {exc}"
            ) from exc
        if not isinstance(getattr(extra, "WORKFLOWS", None), tuple):
            raise RegistrationError(
                f"${EXTRA_VARIABLE}: {module_name} has no WORKFLOWS = (Workflow(...), ...)"
            )
        entries += extra.WORKFLOWS
    for what, keys in (
        ("name", [w.name for w in entries]),
        ("command", [w.command for w in entries]),
        ("worker node", [worker.node for w in entries for worker in w.workers]),
    ):
        if clashes := sorted({key for key in keys if keys.count(key) > 1}):
            raise RegistrationError(f"two workflows have the {what} {', '.join(clashes)}")
    return {w.name: w for w in entries}


WORKFLOWS = registered((EVALUATION, ARTICLE, RESEARCH))
"""Every workflow by name (its graph id, Temporal workflow type and run records' ``graph``)."""
COMMANDS = {w.command: w for w in WORKFLOWS.values()}
"""The workflows by the ``fanout`` command that runs them."""
WORKERS = {worker.node: worker for w in WORKFLOWS.values() for worker in w.workers}
"""Every workflow's fan-out workers, by node name."""
ROLES = tuple(dict.fromkeys(role for w in WORKFLOWS.values() for role in w.roles))
"""Every model role some workflow calls."""


def server_configs() -> dict[str, dict[str, Any]]:
    """``langgraph.json`` and ``aegra.json`` as they must read, by file name."""
    graphs = {
        w.name: {"path": f"{w.served_from}:{w.name}", "description": w.description}
        for w in WORKFLOWS.values()
    }
    configs = {}
    for name in ("langgraph.json", "aegra.json"):
        config = json.loads((ROOT / name).read_text())
        config["graphs"] = graphs
        configs[name] = config
    configs["aegra.json"]["http"] = {"app": AEGRA_APP}
    return configs


def main() -> None:
    """Check every workflow's graph, then rewrite the servers' JSON configs."""
    for workflow in WORKFLOWS.values():
        workflow.module  # noqa: B018  # loading it checks it
    for name, config in server_configs().items():
        (ROOT / name).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
