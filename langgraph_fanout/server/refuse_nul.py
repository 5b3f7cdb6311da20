"""A middleware for Aegra (``aegra_app.py``): requests holding a NUL character are refused.

Aegra strips U+0000 from a run's input before storing it (PostgreSQL's JSON cannot hold it), so
the graph's own input check never sees one and the run goes on with other text than was sent;
on a state update it answers 500 with a piece of the value. This middleware wraps every Aegra
route: a request whose JSON body holds a NUL anywhere is refused with 422, with the
input check's own message when the NUL is in a run's input (the message ``langgraph dev`` gives),
and nothing of the refused value in the answer.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from langgraph_fanout.workflows import WORKFLOWS
from state.inputs import InvalidInputError, parse_input, refuse_controls

NUL = "\x00"


def refusal(body: Any) -> str | None:
    """Why a request with JSON ``body`` is refused (None: it holds no NUL)."""
    found = _nul_in(body)
    if found is None:
        return None
    path, text, in_key = found
    assistant = body.get("assistant_id") if isinstance(body, dict) else None
    workflow = WORKFLOWS.get(assistant) if isinstance(assistant, str) else None
    if workflow is not None and path[:1] == ("input",) and not in_key:
        try:
            parse_input(workflow.input_model, body["input"])
        except InvalidInputError as exc:
            return str(exc)
    where = ".".join(map(str, path)) or "the body"
    try:
        refuse_controls(text)
    except ValueError as exc:
        return f"invalid request: {where}: {'a key ' if in_key else ''}{exc}"
    raise AssertionError("a text holding a NUL passed the control check")


def _nul_in(value: Any, path: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str, bool] | None:
    """The first text in ``value`` holding a NUL: its path, the text, whether it is a key.

    A key's path is its object's: the key itself is not repeated in an answer.
    """
    if isinstance(value, str):
        return (path, value, False) if NUL in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and NUL in key:
            return path, key, True
        if (found := _nul_in(item, (*path, key))) is not None:
            return found
    return None


class RefuseNul:
    """ASGI middleware: 422 for a JSON request body holding a NUL; else the body passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read a POST/PUT/PATCH body whole, answer it or hand it on unchanged."""
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        reason = None
        if b"\\u0000" in body.lower():  # JSON writes a NUL as \u0000
            try:
                reason = refusal(json.loads(body))
            except ValueError:
                pass  # not JSON: Aegra answers it
        if reason is not None:
            answer = json.dumps({"detail": reason}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(answer)),
            ]
            await send({"type": "http.response.start", "status": 422, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # a streaming answer listens for the disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
