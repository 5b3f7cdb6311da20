"""The ``fanout`` command: run, resume, list and inspect durable runs of the workflows."""
