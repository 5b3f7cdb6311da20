"""Where nodes run under Temporal: LLM nodes as activities, other steps in the workflow."""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph

from graphs.placement import AsyncFunction
from temporal_runs.policy import activity_options


def work_label(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """An activity's summary: the section or question a worker works on (None otherwise).

    The plugin calls it in the workflow with the node's arguments; ``args[0]`` is the node's
    input. Shown in the Temporal UI and in ``fanout``'s progress view.
    """
    state = args[0] if args else None
    if not isinstance(state, dict):
        return None
    if isinstance(section := state.get("section"), dict):
        return str(section.get("name", "")) or None
    if isinstance(question := state.get("question"), str):
        return question or None
    return None


class ActivityPlacement:
    """A :class:`graphs.placement.Placement` for Temporal's LangGraph plugin.

    Nodes are added as the bare async functions (the plugin needs LangGraph's own wrapper
    and refuses LangGraph retry policies): each LLM node is an activity with
    :func:`temporal_runs.policy.activity_options`, each other step runs in the workflow, and
    routers are the functions themselves (async, so the workflow sandbox runs them inline).
    """

    def add_llm_node(self, builder: StateGraph[Any, Any, Any, Any], node: AsyncFunction) -> None:
        """Add ``node`` as an activity, retried by Temporal."""
        metadata = {"execute_in": "activity", "summary_fn": work_label, **activity_options()}
        builder.add_node(node.__name__, node, metadata=metadata)

    def add_step(self, builder: StateGraph[Any, Any, Any, Any], step: AsyncFunction) -> None:
        """Add ``step`` to run inside the workflow (deterministic, no I/O)."""
        builder.add_node(step.__name__, step, metadata={"execute_in": "workflow"})

    def router(self, route: AsyncFunction) -> AsyncFunction:
        """``route`` itself."""
        return route
