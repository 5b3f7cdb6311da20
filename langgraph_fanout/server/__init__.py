"""What the ``langgraph dev`` server loads, as named in ``langgraph.json``: graphs, checkpointer."""
