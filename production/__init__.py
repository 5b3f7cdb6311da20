"""Serve the graphs on Aegra, an open LangGraph API server, with PostgreSQL and Redis.

``python -m production`` (``make serve-production``) starts the replicas; the tests and
``make bench-servers`` start theirs with the same functions (``production.replicas``).
"""
