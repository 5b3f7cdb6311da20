"""The middleware Aegra serves the graphs behind: a NUL anywhere in a request body is refused."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from langgraph_fanout.server.refuse_nul import RefuseNul, refusal


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            {"assistant_id": "research", "input": {"topic": "Heat\x00pumps"}},
            "invalid ResearchInput: topic: must not contain control characters (U+0000 at "
            "position 4)",
            id="run-input",
        ),
        pytest.param(
            {"assistant_id": "9f6f4c2e-0000-4000-8000-000000000000", "input": {"topic": "\x00"}},
            "invalid request: input.topic: must not contain control characters (U+0000 at "
            "position 0)",
            id="assistant-by-id",
        ),
        pytest.param(
            {"values": {"findings": [{"question": "q", "answer": "a\x00"}]}},
            "invalid request: values.findings.0.answer: must not contain control characters "
            "(U+0000 at position 1)",
            id="nested",
        ),
        pytest.param(
            {"metadata": {"k\x00": "v"}},
            "invalid request: metadata: a key must not contain control characters (U+0000 at "
            "position 1)",
            id="in-a-key",
        ),
        pytest.param({"input": {"topic": "Heat pumps \\u0000 as text"}}, None, id="escaped-text"),
    ],
)
def test_refusal_names_where_the_nul_is(body: object, reason: str | None) -> None:
    assert refusal(body) == reason


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": (await request.body()).decode()})


async def stream(request: Request) -> StreamingResponse:
    await request.body()

    async def parts():  # noqa: ANN202
        for n in range(3):
            yield f"data: {n}\n\n"

    return StreamingResponse(parts(), media_type="text/event-stream")


APP = RefuseNul(
    Starlette(
        routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream, methods=["POST"])]
    )
)


async def test_the_middleware_refuses_a_nul_and_passes_everything_else_unchanged() -> None:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://aegra") as http:
        refused = await http.post("/echo", json={"input": {"topic": "Heat\x00pumps"}})
        body = json.dumps({"input": {"topic": "Heat pumps é"}}, ensure_ascii=False)
        passed = await http.post("/echo", content=body.encode())
        not_json = await http.post("/echo", content=b"\\u0000 but not JSON {")
        streamed = await http.post("/stream", json={"input": {"topic": "ok"}})

    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "invalid request: input.topic: must not contain control characters "
        "(U+0000 at position 4)"
    }
    assert passed.status_code == 200 and passed.json() == {"got": body}
    assert not_json.json() == {"got": "\\u0000 but not JSON {"}  # Aegra answers that itself
    assert streamed.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
