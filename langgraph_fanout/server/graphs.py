"""The three graphs as the LangGraph API server serves them (named in ``langgraph.json``).

Each is a factory the server calls with a run's config, so a run setting that LangGraph would
only trip over deep inside (a ``max_concurrency`` below 1 ends in "Semaphore initial value
must be >= 0", or runs unbounded when 0) is refused first, with a message that names it. The
graphs refuse bad input before anything is saved (``graphs/checked.py``), and a run holds its
thread's lock, the one ``fanout`` takes, while it runs (``server/one_writer.py``).
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

from graphs import article as article_graph
from graphs import evaluation as evaluation_graph
from graphs import research as research_graph
from langgraph_fanout.server.one_writer import OneWriterGraph
from state.context import ConfigurationError

SERVED = {
    module.graph.name: OneWriterGraph.of(module.graph)
    for module in (evaluation_graph, article_graph, research_graph)
}


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


def evaluation(config: RunnableConfig) -> OneWriterGraph:
    """The evaluation graph, for a run with ``config``."""
    check_run_config(config)
    return SERVED["evaluation"]


def article(config: RunnableConfig) -> OneWriterGraph:
    """The article graph, for a run with ``config``."""
    check_run_config(config)
    return SERVED["article"]


def research(config: RunnableConfig) -> OneWriterGraph:
    """The research graph, for a run with ``config``."""
    check_run_config(config)
    return SERVED["research"]
