"""The contract a workflow's graph module keeps, checked when its entry first loads it.

docs/development.md, "Adding a workflow", lists the rules; each break raises
:class:`RegistrationError` with what to do, before any run of any door.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph_fanout.workflows import Workflow


class RegistrationError(Exception):
    """A workflow entry or its graph module breaks the contract; the message says what to do."""


def check_graph(workflow: Workflow, module: Any) -> None:
    """Hold ``workflow``'s graph ``module`` to the contract (docs/development.md).

    Raises:
        RegistrationError: what breaks it, and what to do.
    """
    from langgraph.channels import BinaryOperatorAggregate

    from langgraph_fanout.placement import SyncOrAsync

    where = f"workflow {workflow.name!r} ({module.__name__})"
    for attribute in ("build", "builder", "graph"):
        if not hasattr(module, attribute):
            raise RegistrationError(
                f"{where}: no `{attribute}`: a graph module exports build(placement), "
                f"builder = build() and graph = builder.compile(name={workflow.name!r})"
            )
    if module.graph.name != workflow.name:
        raise RegistrationError(
            f"{where}: its graph is named {module.graph.name!r}: compile it with "
            f"builder.compile(name={workflow.name!r})"
        )
    builder = module.builder
    if missing := [key for key in ("spent", "deferred", "resend") if key not in builder.channels]:
        raise RegistrationError(
            f"{where}: its state has no {', '.join(missing)}: copy them from "
            "tests/fixtures/translate/state.py (what spending limits need)"
        )
    for node, spec in builder.nodes.items():
        if not isinstance(spec.runnable, SyncOrAsync):
            raise RegistrationError(
                f"{where}: node {node!r} was not added through the placement: add it with "
                "placement.add_llm_node, add_worker_node or add_step"
            )
    fan_out = {n for n, spec in builder.nodes.items() if spec.runnable.held_back == "defer-task"}
    declared = {worker.node for worker in workflow.workers}
    if fan_out != declared:
        raise RegistrationError(
            f"{where}: its workers are {sorted(fan_out)} (placement.add_worker_node) but the "
            f"entry declares {sorted(declared)}: give each one Worker(node, results, label)"
        )
    for worker in workflow.workers:
        channel = builder.channels.get(worker.results)
        value = channel.ValueType if isinstance(channel, BinaryOperatorAggregate) else None
        if typing.get_origin(value) is typing.Annotated:
            value = typing.get_args(value)[0]
        if typing.get_origin(value) is not list:
            raise RegistrationError(
                f"{where}: worker {worker.node!r} appends to {worker.results!r}, which must be "
                f"a list with a reducer in the state: {worker.results}: "
                "Annotated[list[T], operator.add]"
            )
    if workflow.plan is not None and workflow.plan.review_node not in builder.nodes:
        raise RegistrationError(
            f"{where}: the plan is reviewed in node {workflow.plan.review_node!r}, which the "
            "graph does not have: add it (placement.add_step), or drop the entry's plan"
        )
