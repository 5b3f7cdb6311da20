"""The three graphs as the ``langgraph dev`` server serves them (named in ``langgraph.json``).

Each is a factory the server calls with a run's config, so a run setting that LangGraph would
only trip over deep inside (a ``max_concurrency`` below 1 ends in "Semaphore initial value
must be >= 0", or runs unbounded when 0) is refused first, with a message that names it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from graphs import article as article_graph
from graphs import evaluation as evaluation_graph
from graphs import research as research_graph
from state.context import ConfigurationError, Context

Graph = CompiledStateGraph[Any, Context, Any, Any]


def check_run_config(config: RunnableConfig) -> None:
    """Refuse a run config LangGraph cannot honour.

    Raises:
        ConfigurationError: ``max_concurrency`` is not a whole number >= 1.
    """
    value = config.get("max_concurrency")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(
            f"config.max_concurrency must be a whole number >= 1 (or absent), got {value!r}"
        )


def evaluation(config: RunnableConfig) -> Graph:
    """The evaluation graph, for a run with ``config``."""
    check_run_config(config)
    return evaluation_graph.graph


def article(config: RunnableConfig) -> Graph:
    """The article graph, for a run with ``config``."""
    check_run_config(config)
    return article_graph.graph


def research(config: RunnableConfig) -> Graph:
    """The research graph, for a run with ``config``."""
    check_run_config(config)
    return research_graph.graph
