"""The workflows, one entry each: everything the doors need to know about a graph.

The CLI (its commands, run records, plan review, printed result), the LangGraph API servers
(``langgraph_fanout/server/graphs.py``, ``langgraph.json``, ``aegra.json``) and Temporal (one
workflow type per entry) are derived from :data:`WORKFLOWS`. Adding a workflow means writing
its graph (``graphs/<name>.py``), nodes and state, and one entry here; then
``python -m langgraph_fanout.workflows`` rewrites the servers' JSON configs (a test fails
while they are stale).

Importing this module is cheap (no LangGraph, no LangChain): a graph is built on first use,
so the CLI can reject bad input at once.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from state.article import ArticleInput, decide_sections
from state.context import Context
from state.evaluation import EvaluationInput
from state.research import MAX_QUESTIONS, MIN_QUESTIONS, ResearchInput, decide_questions
from state.review import Outcome

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph


@dataclass(frozen=True)
class Plan:
    """A workflow's plan, which a person may review before the fan-out.

    ``decide(value, plan, context)`` is the rule a review applies to a decision (raising
    ``InvalidDecisionError`` for an invalid one); ``items(plan)`` gives each planned item as
    (heading, detail) for a person to read; ``bound(context)`` says how many items a plan
    may hold, in words; one worker makes one LLM call per item.
    """

    key: str
    review_node: str
    noun: str
    decide: Callable[[Any, dict[str, Any], Context], Outcome[Any]]
    items: Callable[[dict[str, Any]], list[tuple[str, str]]]
    bound: Callable[[Context], str]
    calls_after: int = 0
    """LLM calls the run makes after its workers (the research report's writer)."""


@dataclass(frozen=True)
class Workflow:
    """One workflow: its graph (module ``graphs.<name>``), input, plan, and printed result."""

    name: str
    command: str
    description: str
    input_model: type[BaseModel]
    input_field: str
    render: Callable[[dict[str, Any]], str]
    plan: Plan | None = None
    options: tuple[str, ...] = ()
    """``Context`` settings of this workflow's own that ``fanout`` takes as options."""

    @property
    def module(self) -> Any:
        """The graph's module: ``build(placement)``, ``builder`` and ``graph``."""
        return importlib.import_module(f"graphs.{self.name}")

    @property
    def builder(self) -> StateGraph[Any, Context, Any, Any]:
        """The graph's builder (importing its module builds it)."""
        builder: StateGraph[Any, Context, Any, Any] = self.module.builder
        return builder

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
)
ARTICLE = Workflow(
    name="article",
    command="article",
    description="Orchestrator-workers: plan the sections of a short article, write them in "
    'parallel (one Send per section), join them in plan order. Input: {"topic": ...}.',
    input_model=ArticleInput,
    input_field="topic",
    render=lambda output: str(output["article"]),
    plan=Plan(
        key="sections",
        review_node="review_sections",
        noun="sections",
        decide=lambda value, plan, context: decide_sections(
            value, plan.get("sections", []), context.max_sections
        ),
        items=lambda plan: [(s["name"], s["description"]) for s in plan["sections"]],
        bound=lambda context: f"at most {context.max_sections}",
    ),
    options=("max_sections",),
)
RESEARCH = Workflow(
    name="research",
    command="research",
    description="Durable research report: plan 2-4 research questions, answer them in parallel "
    '(one Send per question), write the report. Input: {"topic": ...}.',
    input_model=ResearchInput,
    input_field="topic",
    render=_report,
    plan=Plan(
        key="questions",
        review_node="review_questions",
        noun="research questions",
        decide=lambda value, plan, context: decide_questions(value, plan.get("questions", [])),
        items=lambda plan: [(question, "") for question in plan["questions"]],
        bound=lambda context: f"{MIN_QUESTIONS} to {MAX_QUESTIONS}",
        calls_after=1,
    ),
)

WORKFLOWS = {w.name: w for w in (EVALUATION, ARTICLE, RESEARCH)}
"""Every workflow by name (its graph id, Temporal workflow type and run records' ``graph``)."""
COMMANDS = {w.command: w for w in WORKFLOWS.values()}
"""The workflows by the ``fanout`` command that runs them."""

ROOT = Path(__file__).resolve().parent.parent
SERVED_FROM = "./langgraph_fanout/server/graphs.py"
AEGRA_APP = "./langgraph_fanout/server/aegra_app.py:app"
"""Aegra's HTTP app: its routes behind the project's middleware."""


def server_configs() -> dict[str, dict[str, Any]]:
    """``langgraph.json`` and ``aegra.json`` as they must read, by file name."""
    graphs = {
        w.name: {"path": f"{SERVED_FROM}:{w.name}", "description": w.description}
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
    """Rewrite the servers' JSON configs from :data:`WORKFLOWS`."""
    for name, config in server_configs().items():
        (ROOT / name).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
