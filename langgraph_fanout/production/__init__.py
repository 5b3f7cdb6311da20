"""Serve the graphs on Aegra, an open LangGraph API server, with PostgreSQL and Redis.

``python -m langgraph_fanout.production`` (``make serve-production``) starts the replicas;
the tests and ``make bench-servers`` start theirs with the same functions
(``langgraph_fanout.production.replicas``).
"""
