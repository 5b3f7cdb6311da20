"""The graphs as Temporal workflows (optional ``[temporal]`` extra).

Every LLM node runs as a Temporal activity on any live worker, the graph itself in a
workflow; Temporal journals the plan and each worker's result and drives a run to the end on
its own when a worker dies. Built on Temporal's LangGraph plugin (``temporalio.langgraph``).

- :mod:`langgraph_fanout.temporal.placement`: nodes as activities, workers in batches
- :mod:`langgraph_fanout.temporal.workflows`: one workflow per graph, and its input
- :mod:`langgraph_fanout.temporal.policy`: retries, timeouts, heartbeats, usage
- :mod:`langgraph_fanout.temporal.worker`: a worker that serves all three
- :mod:`langgraph_fanout.temporal.client`: submit a run and wait for its output
- :mod:`langgraph_fanout.temporal.progress`: a run's activities, from its history
"""

DEFAULT_TASK_QUEUE = "fanout"
"""The task queue of the runs and workers that name none."""
