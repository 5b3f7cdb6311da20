"""The three graphs as Temporal workflows (optional ``[temporal]`` extra).

Every LLM node runs as a Temporal activity on any live worker, the graph itself in a
workflow; Temporal journals the plan and each worker's result and drives a run to the end on
its own when a worker dies. Built on Temporal's LangGraph plugin (``temporalio.langgraph``).

- :mod:`temporal_runs.placement`: nodes as activities (``graphs.<name>.build(placement)``)
- :mod:`temporal_runs.workflows`: one workflow per graph, and its input
- :mod:`temporal_runs.policy`: retries, timeouts and heartbeats from the in-process policy
- :mod:`temporal_runs.worker`: a worker that serves all three
- :mod:`temporal_runs.client`: submit a run and wait for its output
- :mod:`temporal_runs.progress`: which activities run, finished or retry, from the history
"""
