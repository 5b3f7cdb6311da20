"""The graphs as the LangGraph API servers serve them (named in ``langgraph.json``, ``aegra.json``).

Each is a factory the server calls with a run's config, so a run setting that LangGraph would
only trip over deep inside (a ``max_concurrency`` below 1 ends in "Semaphore initial value
must be >= 0", or runs unbounded when 0) is refused first, with a message that names it. The
graphs refuse bad input before anything is saved (``langgraph_fanout/checked_graph.py``), and a
run holds its thread's lock, the one ``fanout`` takes, while it runs
(``langgraph_fanout/server/one_writer.py``).
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

from langgraph_fanout.llm.models import import_model_sdks
from langgraph_fanout.server.one_writer import OneWriterGraph
from langgraph_fanout.workflows import WORKFLOWS
from state.context import ConfigurationError

import_model_sdks()  # the servers import this module as they start, before any run

SERVED = {name: OneWriterGraph.of(w.module.graph) for name, w in WORKFLOWS.items()}
"""The graphs served, by name: each holds its thread's lock while it runs."""


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


def served(name: str, config: RunnableConfig) -> OneWriterGraph:
    """Workflow ``name``'s graph, for a run with ``config`` (checked first)."""
    check_run_config(config)
    return SERVED[name]


# What the JSON configs name (``Workflow.served_from``): a function per workflow of this
# package (the servers call a graph factory with the run's config).


def evaluation(config: RunnableConfig) -> OneWriterGraph:
    """The evaluation graph, for a run with ``config``."""
    return served("evaluation", config)


def article(config: RunnableConfig) -> OneWriterGraph:
    """The article graph, for a run with ``config``."""
    return served("article", config)


def research(config: RunnableConfig) -> OneWriterGraph:
    """The research graph, for a run with ``config``."""
    return served("research", config)
