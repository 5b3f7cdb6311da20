"""Callback handlers tests use to see what a graph run did."""

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler


class NodeAttempts(BaseCallbackHandler):
    """Counts the attempts of each node (a retry is one more) by node name."""

    run_inline = True

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        node = (kwargs.get("metadata") or {}).get("langgraph_node")
        if node is not None and kwargs.get("name") == node:
            self.counts[node] = self.counts.get(node, 0) + 1
