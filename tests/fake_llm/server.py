"""OpenAI-compatible fake Chat Completions server for tests and benchmarks.

Run it as a separate process; it prints ``FAKE_LLM_PORT=<port>`` once listening::

    python -m tests.fake_llm --host 127.0.0.1 --port 0 --latency 0.1

Replies are deterministic. Structured requests (a ``json_schema`` or ``json_object`` response
format, or tools) get JSON generated from the schema; plain requests get
``"Fake answer to: <head of the last user message>"``. With ``tool_choice`` ``"auto"`` (or unset)
a request whose last message is a tool result gets a text reply, so agent loops terminate.

Tests steer the server through the JSON control API under ``/_control`` (reset, config, rules,
log, stats); ``tests.fake_llm.FakeLLM`` wraps it. Log timestamps are ``time.monotonic()``
seconds, comparable with the test process's clock on Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FAULTS = frozenset({"500", "429", "invalid_json", "schema_violation", "hang", "empty"})
HANG_SECONDS = 3600.0
CLIENT_CLOSED = 499  # logged status of a hung request whose client gave up
TEXT_HEAD = 80
VALUE_HEAD = 40
STREAM_PIECE = 16  # characters per streamed delta
MAX_DEPTH = 8  # recursion guard for recursive schemas: deeper arrays are empty
JSON_OBJECT_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "fake@example.com",
    "uri": "https://example.com/fake",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


@dataclass(slots=True)
class Rule:
    """Scripted behaviour for matching requests; the first non-exhausted match wins.

    ``match`` is a substring of the newline-joined message contents, ``schema`` the
    ``json_schema`` or tool name. A ``fault`` takes precedence over ``response``.
    ``fault_rate`` > 0 instead injects a fault drawn from ``fault_mix`` into that share of the
    matching requests, decided by a hash of ``seed``, the conversation text and how often
    the same text came before: the same requests get the same faults in every run,
    whatever order concurrency brings them in.
    ``chunk_delay`` paces a streamed reply: seconds between its events (the request stays
    in flight, and its ``t_end`` is logged, until the last one is sent).
    ``hold`` keeps a matching request waiting until the test calls ``/_control/release``,
    then answers it as usual: a run held mid-flight for exactly as long as a test needs.
    ``reply_chars`` makes a plain reply that many characters of prose-like text (words drawn
    from :data:`WORDS`, seeded by the request): as varied as prose, so it compresses like it.
    """

    match: str | None = None
    schema: str | None = None
    latency: float | None = None
    times: int | None = None
    fault: str | None = None
    retry_after: float | None = None
    fault_rate: float = 0.0
    fault_mix: list[str] = field(default_factory=list)
    seed: int = 0
    response: Any = None
    items: int | None = None
    chunk_delay: float | None = None
    reply_chars: int | None = None
    hold: bool = False
    used: int = 0

    @classmethod
    def from_json(cls, data: Any) -> Rule:
        """Validate a rule sent to ``/_control/rules``."""
        if not isinstance(data, dict):
            raise ValueError(f"a rule must be an object, got {data!r}")
        unknown = set(data) - RULE_KEYS
        if unknown:
            raise ValueError(f"unknown rule keys {sorted(unknown)}")
        for fault in [data.get("fault"), *data.get("fault_mix", [])]:
            if fault is not None and fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        if not 0.0 <= float(data.get("fault_rate", 0.0)) <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if data.get("fault_rate") and not data.get("fault_mix"):
            raise ValueError("fault_rate needs a non-empty fault_mix")
        return cls(**data)

    def fault_for(self, text: str, repeat: int) -> str | None:
        """The fault this rule injects into the ``repeat``-th request with this ``text``."""
        if not self.fault_rate:
            return self.fault
        digest = hashlib.sha256(f"{self.seed}|{repeat}|{text}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw >= self.fault_rate:
            return None
        return self.fault_mix[int.from_bytes(digest[8:16], "big") % len(self.fault_mix)]

    def applies(self, text: str, schema: str | None) -> bool:
        """Whether the rule is live and matches the conversation text and schema name."""
        return (
            (self.times is None or self.used < self.times)
            and (self.match is None or self.match in text)
            and (self.schema is None or self.schema == schema)
        )


RULE_KEYS = frozenset(f.name for f in fields(Rule)) - {"used"}


@dataclass(slots=True)
class ChatRequest:
    """The parts of a Chat Completions request that shape the reply."""

    body: dict[str, Any]
    text: str  # every message content, concatenated: what rules match against
    last_user: str
    system: str | None
    tool: str | None  # name of the function the reply calls, if any
    schema_name: str | None
    schema: dict[str, Any] | None  # None for a plain text reply
    seq: int = 0  # position in the log, set on arrival

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ChatRequest:
        """Extract messages, the structured-output schema and the tool to call."""
        messages = body.get("messages") or []
        contents = [_content_text(m.get("content")) for m in messages]
        roles = [m.get("role") for m in messages]
        users = [c for c, r in zip(contents, roles, strict=True) if r == "user"]
        systems = [c for c, r in zip(contents, roles, strict=True) if r in ("system", "developer")]
        function = _called_function(body, roles)
        fmt = body.get("response_format") or {}
        if function is not None:
            name, schema = function.get("name"), function.get("parameters") or {}
        elif fmt.get("type") == "json_schema":
            name, schema = fmt["json_schema"].get("name"), fmt["json_schema"].get("schema") or {}
        else:
            name, schema = None, JSON_OBJECT_SCHEMA if fmt.get("type") == "json_object" else None
        return cls(
            body=body,
            text="\n".join(contents),
            last_user=users[-1] if users else "",
            system=systems[0] if systems else None,
            tool=name if function is not None else None,
            schema_name=name,
            schema=schema,
        )


def _content_text(content: Any) -> str:
    """Text of a message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _called_function(body: dict[str, Any], roles: list[str | None]) -> dict[str, Any] | None:
    """The function definition the reply must call, or None for a content reply."""
    functions = [t["function"] for t in body.get("tools") or [] if "function" in t]
    choice = body.get("tool_choice")
    if not functions or choice == "none":
        return None
    if isinstance(choice, dict):
        wanted = choice.get("function", {}).get("name")
        return next((f for f in functions if f.get("name") == wanted), functions[0])
    if choice in (None, "auto") and roles and roles[-1] == "tool":
        return None
    return functions[0]


def _head(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text`` with whitespace collapsed."""
    return " ".join(text[: limit * 2].split())[:limit]


class ValueGenerator:
    """Deterministic JSON values valid against a JSON schema."""

    def __init__(self, root: dict[str, Any], head: str, items: int) -> None:
        self.root = root
        self.head = head
        self.items = items

    def value(self, schema: dict[str, Any], name: str, depth: int = 0, tag: str = "") -> Any:
        """A value for ``schema``; ``name`` is the property and ``tag`` the array item number."""
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            return self.value(self._branch(branches, depth), name, depth, tag)
        kind = _json_type(schema)
        if kind == "object":
            return self._object(schema, depth, tag)
        if kind == "array":
            return self._array(schema, name, depth, tag)
        if kind == "string":
            return self._string(schema, name, tag)
        if kind in ("integer", "number"):
            return _number(schema, kind)
        return True if kind == "boolean" else None

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow local ``$ref`` pointers and merge ``allOf`` parts."""
        while "$ref" in schema:
            target: Any = self.root
            for part in schema["$ref"].lstrip("#").strip("/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in map(self.resolve, schema["allOf"]):
                props = {**merged.get("properties", {}), **part.get("properties", {})}
                merged.update(part, properties=props)
            schema = merged
        return schema

    def _branch(self, branches: list[dict[str, Any]], depth: int) -> dict[str, Any]:
        """The first non-null branch, or null once the recursion guard trips."""
        resolved = [self.resolve(b) for b in branches]
        null = [b for b in resolved if b.get("type") == "null"]
        if null and depth >= MAX_DEPTH:
            return null[0]
        return next((b for b in resolved if b.get("type") != "null"), resolved[0])

    def _object(self, schema: dict[str, Any], depth: int, tag: str) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties", {})
        if depth >= MAX_DEPTH:
            required = set(schema.get("required", ()))
            props = {k: v for k, v in props.items() if k in required}
        return {key: self.value(sub, key, depth + 1, tag) for key, sub in props.items()}

    def _array(self, schema: dict[str, Any], name: str, depth: int, tag: str) -> list[Any]:
        count = max(self.items if depth < MAX_DEPTH else 0, schema.get("minItems", 0))
        count = min(count, schema.get("maxItems", count))
        item = schema.get("items")
        item = item if isinstance(item, dict) else {}
        sep = "." if tag else " "
        return [self.value(item, name, depth + 1, f"{tag}{sep}{i + 1}") for i in range(count)]

    def _string(self, schema: dict[str, Any], name: str, tag: str) -> str:
        if schema.get("format") in STRING_FORMATS:
            return STRING_FORMATS[schema["format"]]
        text = f"Fake {name}{tag} for: {self.head}"[: schema.get("maxLength")]
        return text.ljust(schema.get("minLength", 0), ".")


def _json_type(schema: dict[str, Any]) -> str:
    """The JSON type a schema describes, preferring non-null types of a type list."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind:
        return kind
    if "properties" in schema:
        return "object"
    return "array" if "items" in schema else "string"


def _number(schema: dict[str, Any], kind: str) -> int | float:
    """``minimum`` (or just above ``exclusiveMinimum``, or 1), capped by the maximum."""
    if "minimum" in schema:
        value = schema["minimum"]
    elif "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"] + 1
    else:
        value = 1
    value = min(value, schema.get("maximum", value))
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        value = schema["exclusiveMaximum"] - 1
    return int(value) if kind == "integer" else value


def _violation(valid: Any) -> dict[str, Any]:
    """Break a valid object: every value gets a different JSON type."""
    if not isinstance(valid, dict) or not valid:
        return {"unexpected": "not-a-valid-value"}
    return {k: 12345 if isinstance(v, str) else "not-a-valid-value" for k, v in valid.items()}


def _truncated_json(schema: dict[str, Any] | None) -> str:
    """Unparseable JSON, as if the model was cut off mid-string."""
    key = next(iter((schema or {}).get("properties", {})), "explanation")
    return f'{{"{key}": "cut off'


@dataclass(slots=True)
class FakeState:
    """Rules, request log and concurrency counters of one server process."""

    default_latency: float
    latency: float = 0.0
    default_items: int = 3
    rules: list[Rule] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    epoch: str = ""  # the current test's: requests under another test's prefix are refused

    def reset(self) -> None:
        """Drop rules, log and counters; restore the default latency and item count."""
        self.released.set()  # nothing stays held across tests
        self.released = asyncio.Event()
        self.latency = self.default_latency
        self.default_items = 3
        self.rules.clear()
        self.log = []
        self.in_flight = self.peak_in_flight = 0
        self.seen.clear()

    def pick_rule(self, req: ChatRequest) -> tuple[Rule | None, str | None]:
        """Consume one use of the first live rule matching ``req``: the rule and its fault."""
        repeat = self.seen.get(req.text, 0)
        self.seen[req.text] = repeat + 1
        for rule in self.rules:
            if rule.applies(req.text, req.schema_name):
                rule.used += 1
                return rule, rule.fault_for(req.text, repeat)
        return None, None

    def open_record(self, req: ChatRequest, fault: str | None) -> dict[str, Any]:
        """Log an arriving request and count it in flight."""
        body = req.body
        record = {
            "seq": len(self.log) + 1,
            "t_start": time.monotonic(),
            "t_end": None,
            "schema": req.schema_name,
            "last_user": req.last_user,
            "system": req.system,
            "model": body.get("model"),
            "status": None,
            "fault": fault,
            "max_tokens": body.get("max_tokens"),
            "max_completion_tokens": body.get("max_completion_tokens"),
            "temperature": body.get("temperature"),
            "stream": bool(body.get("stream")),
        }
        self.log.append(record)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return record

    def close_record(self, record: dict[str, Any], status: int | None) -> None:
        """Mark a request finished; requests that arrived before a reset are not counted."""
        record["t_end"] = time.monotonic()
        record["status"] = status
        seq = record["seq"]
        if len(self.log) >= seq and self.log[seq - 1] is record:
            self.in_flight -= 1


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``, or ``/t/<epoch>/v1/chat/completions`` from one test.

    A request under an earlier test's epoch (a process that test left behind) gets 410, and
    neither enters the log nor uses a rule.
    """
    state: FakeState = request.app.state.fake
    if request.path_params.get("epoch", state.epoch) != state.epoch:
        return _error(410, "This fake LLM URL belongs to an earlier test.", "invalid_request_error")
    try:
        req = ChatRequest.parse(await request.json())
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        return _error(400, f"Invalid request: {exc}", "invalid_request_error")
    rule, fault = state.pick_rule(req)
    record = state.open_record(req, fault)
    req.seq = record["seq"]
    status = None
    paced = False
    try:
        response = await _respond(
            request, state, req, rule, fault, lambda: state.close_record(record, 200)
        )
        status = response.status_code
        paced = isinstance(response, StreamingResponse)  # it closes the record itself
        return response
    finally:
        if not paced:
            state.close_record(record, status)


async def _respond(
    request: Request,
    state: FakeState,
    req: ChatRequest,
    rule: Rule | None,
    fault: str | None,
    streamed: Callable[[], None],
) -> Response:
    """Wait out the latency (or hang), then answer as the rule and its ``fault`` dictate."""
    latency = rule.latency if rule and rule.latency is not None else state.latency
    if fault == "hang":
        if await _client_left_during_hang(request):
            return Response(status_code=CLIENT_CLOSED)
    elif latency > 0:
        await asyncio.sleep(latency)
    if rule is not None and rule.hold:
        await state.released.wait()
    if fault == "500":
        return _error(500, "The server had an error processing your request.", "server_error")
    if fault == "429":
        retry_after = rule.retry_after if rule else None
        headers = None if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return _error(429, "Rate limit reached.", "requests", "rate_limit_exceeded", headers)
    items = rule.items if rule and rule.items is not None else state.default_items
    content = _content(req, rule, fault, items)
    if req.body.get("stream"):
        events = _sse(req, content, fault)
        if rule is not None and rule.chunk_delay:
            paced = _paced(events, rule.chunk_delay, streamed)
            return StreamingResponse(paced, media_type="text/event-stream")
        return Response("".join(events).encode(), media_type="text/event-stream")
    return JSONResponse(_completion(req, content, fault))


async def _paced(events: list[str], delay: float, done: Callable[[], None]) -> AsyncIterator[str]:
    """``events`` one at a time, ``delay`` seconds apart; ``done()`` after the last."""
    try:
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(delay)
            yield event
    finally:
        done()


async def _client_left_during_hang(request: Request) -> bool:
    """Hang for ``HANG_SECONDS``; True if the client disconnects first (the body is read)."""
    try:
        async with asyncio.timeout(HANG_SECONDS):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def _error(
    status: int,
    message: str,
    kind: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error response."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _content(req: ChatRequest, rule: Rule | None, fault: str | None, items: int) -> str:
    """The reply's content, or the tool call's arguments."""
    if fault == "empty":
        return ""
    if fault == "invalid_json":
        return _truncated_json(req.schema)
    if rule is not None and rule.response is not None and fault != "schema_violation":
        return rule.response if isinstance(rule.response, str) else json.dumps(rule.response)
    if req.schema is None:
        answer = "Fake answer to: " + _head(req.last_user, TEXT_HEAD)
        if rule is not None and rule.reply_chars:
            return _prose(answer, rule.reply_chars)
        return answer
    generator = ValueGenerator(req.schema, _head(req.last_user, VALUE_HEAD), items)
    value = generator.value(req.schema, req.schema_name or "answer")
    return json.dumps(_violation(value) if fault == "schema_violation" else value)


WORDS = (
    "the of and to in is that for it as with was on be by at this are from or an which have "
    "not they but had one all were there can been has their more when will would who so no "
    "heat pump air water energy system cold climate winter cost home building power grid "
    "storage battery solar wind demand supply price market policy research study data model "
    "result method test measure change increase reduce improve design install run work load "
    "temperature pressure flow rate source ground loop unit house office city region country "
    "year month day hour time long short high low large small new old early late first last "
    "because although however therefore while where whether often usually rarely always never "
    "efficient reliable durable simple complex modern careful quick slow strong weak clear open"
).split()
"""The vocabulary of ``reply_chars`` prose."""


def _prose(head: str, chars: int) -> str:
    """``head``, then sentences of :data:`WORDS`, ``chars`` characters in all (deterministic)."""
    seed = int.from_bytes(hashlib.sha256(head.encode()).digest()[:8], "big")
    parts, size, n = [head], len(head), 0
    while size < chars:
        seed = (seed * 6364136223846793005 + 1442695040888963407) % 2**64  # an LCG: portable
        word = WORDS[(seed >> 33) % len(WORDS)]
        n += 1
        word = word + ("." if n % 12 == 0 else "")
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:chars]


def _base(req: ChatRequest, kind: str) -> dict[str, Any]:
    """Fields shared by completions and chunks."""
    return {
        "id": f"chatcmpl-fake-{req.seq}",
        "object": kind,
        "created": int(time.time()),
        "model": req.body.get("model", "fake-model"),
        "system_fingerprint": None,
    }


def _usage(req: ChatRequest, content: str) -> dict[str, int]:
    """Rough token counts: four characters a token."""
    prompt, completion = len(req.text) // 4, len(content) // 4
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _calls_tool(req: ChatRequest, fault: str | None) -> bool:
    """Whether the reply is a tool call (an ``empty`` fault answers with no call at all)."""
    return req.tool is not None and fault != "empty"


def _tool_call(req: ChatRequest, arguments: str) -> dict[str, Any]:
    return {
        "id": f"call_fake_{req.seq}",
        "type": "function",
        "function": {"name": req.tool, "arguments": arguments},
    }


def _completion(req: ChatRequest, content: str, fault: str | None) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    finish = "stop"
    if _calls_tool(req, fault):
        message.update(content=None, tool_calls=[_tool_call(req, content)])
        finish = "tool_calls"
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    return {**_base(req, "chat.completion"), "choices": [choice], "usage": _usage(req, content)}


def _sse(req: ChatRequest, content: str, fault: str | None) -> list[str]:
    """The ``chat.completion.chunk`` events of a streamed reply, ending with ``[DONE]``."""
    base = _base(req, "chat.completion.chunk")
    with_usage = bool((req.body.get("stream_options") or {}).get("include_usage"))
    pieces = [content[i : i + STREAM_PIECE] for i in range(0, len(content), STREAM_PIECE)]
    if _calls_tool(req, fault):
        call = {"index": 0, **_tool_call(req, "")}
        deltas = [{"role": "assistant", "content": None, "tool_calls": [call]}] + [
            {"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces
        ]
        finish = "tool_calls"
    else:
        deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
        finish = "stop"
    choices = [{"index": 0, "delta": d, "finish_reason": None, "logprobs": None} for d in deltas]
    choices.append({"index": 0, "delta": {}, "finish_reason": finish, "logprobs": None})
    chunks = [{**base, "choices": [c]} for c in choices]
    if with_usage:
        chunks = [{**c, "usage": None} for c in chunks]
        chunks.append({**base, "choices": [], "usage": _usage(req, content)})
    return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]


async def _body(request: Request) -> dict[str, Any]:
    """A control request's JSON object body (empty if none)."""
    raw = await request.body()
    data = json.loads(raw) if raw else {}
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


async def control_reset(request: Request) -> Response:
    """``POST /_control/reset``: clear rules, log and counters; restore the latency.

    ``{"epoch": ...}`` starts a new test: requests under the previous epoch are refused.
    """
    state: FakeState = request.app.state.fake
    state.reset()
    state.epoch = str((await _body(request)).get("epoch", state.epoch))
    return JSONResponse({"ok": True})


async def control_config(request: Request) -> Response:
    """``POST /_control/config``: set ``latency`` and/or ``default_items``."""
    state: FakeState = request.app.state.fake
    try:
        body = await _body(request)
        unknown = set(body) - {"latency", "default_items"}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        latency = float(body.get("latency", state.latency))
        items = int(body.get("default_items", state.default_items))
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    state.latency, state.default_items = latency, items
    return JSONResponse({"latency": state.latency, "default_items": state.default_items})


async def control_rules(request: Request) -> Response:
    """``POST /_control/rules``: append ``{"rules": [...]}``."""
    state: FakeState = request.app.state.fake
    try:
        rules = [Rule.from_json(r) for r in (await _body(request)).get("rules", [])]
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    state.rules.extend(rules)
    return JSONResponse({"rules": len(state.rules)})


async def control_log(request: Request) -> Response:
    """``GET /_control/log``: request records in arrival order."""
    return JSONResponse(request.app.state.fake.log)


async def control_release(request: Request) -> Response:
    """``POST /_control/release``: answer every held request (and those held from now on)."""
    request.app.state.fake.released.set()
    return JSONResponse({"ok": True})


async def control_stats(request: Request) -> Response:
    """``GET /_control/stats``: request count, concurrency and the server's CPU seconds so far."""
    state: FakeState = request.app.state.fake
    stats = {
        "requests": len(state.log),
        "in_flight": state.in_flight,
        "peak_in_flight": state.peak_in_flight,
        "cpu_s": time.process_time(),
    }
    return JSONResponse(stats)


def create_app(latency: float = 0.0) -> Starlette:
    """The fake server's ASGI app, with ``latency`` seconds as its default latency."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/t/{epoch}/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/_control/reset", control_reset, methods=["POST"]),
            Route("/_control/config", control_config, methods=["POST"]),
            Route("/_control/rules", control_rules, methods=["POST"]),
            Route("/_control/log", control_log, methods=["GET"]),
            Route("/_control/stats", control_stats, methods=["GET"]),
            Route("/_control/release", control_release, methods=["POST"]),
        ]
    )
    app.state.fake = FakeState(default_latency=latency, latency=latency)
    return app


class _Server(uvicorn.Server):
    """Announces its port on stdout and exits when its parent process dies."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.parent = os.getppid()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"FAKE_LLM_PORT={port}", flush=True)

    async def on_tick(self, counter: int) -> bool:
        return os.getppid() != self.parent or await super().on_tick(counter)


def main(argv: list[str] | None = None) -> None:
    """Serve the fake until SIGTERM/SIGINT or the parent process exits."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        create_app(args.latency),
        host=args.host,
        port=args.port,
        loop="auto",  # uvloop if installed
        http="auto",  # httptools if installed
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=75,  # outlive client pools' idle expiry: no reuse-after-close races
    )
    _Server(config).run()


if __name__ == "__main__":
    main()
