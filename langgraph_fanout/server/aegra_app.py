"""The HTTP app Aegra mounts (``aegra.json``, ``http.app``).

Aegra imports it first thing, adds its own routes to it and runs its lifespan inside its own,
once its database is set up. So here a replica whose database or Redis URL is malformed or
unreachable stops at once with one line (not a traceback after 30 s, nor a password); its
routes are served behind :class:`~.refuse_nul.RefuseNul`, and its connection pool is kept
serving through PostgreSQL restarts (``pool_guard.py``). FastAPI is Aegra's (the production
virtualenv's), not the project's.
"""

import os

from fastapi import FastAPI

from langgraph_fanout.production.settings import exit_unless_usable
from langgraph_fanout.server.pool_guard import guarding
from langgraph_fanout.server.refuse_nul import RefuseNul

exit_unless_usable(os.environ)

app = FastAPI(lifespan=guarding)
app.add_middleware(RefuseNul)
