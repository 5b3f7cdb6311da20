"""langgraph-fanout: everything around the graphs (``graphs/``, ``nodes/``, ``state/``).

- :mod:`langgraph_fanout.workflows`: the list of workflows, one entry each
- :mod:`langgraph_fanout.llm`: the model factory, the one LLM call nodes make, retry rules
- :mod:`langgraph_fanout.engine`: the embedded llama.cpp model
- :mod:`langgraph_fanout.cli`: the ``fanout`` command
- :mod:`langgraph_fanout.persistence`: checkpointers, batched writes, the per-thread lock
- :mod:`langgraph_fanout.server`: what the LangGraph API servers load
- :mod:`langgraph_fanout.temporal`: the graphs on Temporal
- :mod:`langgraph_fanout.production`: the graphs on Aegra, PostgreSQL and Redis
"""
