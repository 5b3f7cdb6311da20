"""The HTTP app Aegra mounts (``aegra.json``, ``http.app``).

Aegra adds its own routes to this app and runs this app's lifespan inside its own, once its
database is set up. Its routes are served behind :class:`~.refuse_nul.RefuseNul`, and its
connection pool is kept serving through PostgreSQL restarts (``pool_guard.py``). FastAPI is
Aegra's (the production virtualenv's), not the project's.
"""

from fastapi import FastAPI

from langgraph_fanout.server.pool_guard import guarding
from langgraph_fanout.server.refuse_nul import RefuseNul

app = FastAPI(lifespan=guarding)
app.add_middleware(RefuseNul)
