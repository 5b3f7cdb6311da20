"""Where runs are kept: checkpointers for the CLI, for Python callers and for the server."""
