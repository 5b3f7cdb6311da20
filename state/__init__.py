"""Schemas and state types of the graphs, and the run context."""
