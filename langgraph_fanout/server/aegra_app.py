"""The HTTP app Aegra mounts (``aegra.json``, ``http.app``): its routes behind :class:`RefuseNul`.

Aegra adds its own routes to this app, so the middleware wraps every one of them. FastAPI is
Aegra's (the production virtualenv's), not the project's.
"""

from fastapi import FastAPI

from langgraph_fanout.server.refuse_nul import RefuseNul

app = FastAPI()
app.add_middleware(RefuseNul)
