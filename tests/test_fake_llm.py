"""The fake LLM server, exercised through the real langchain-openai and openai clients."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field, ValidationError

from tests.fake_llm import FakeLLM


class Section(BaseModel):
    title: str
    description: str = Field(max_length=30)
    words: int = Field(ge=50)
    kind: Literal["intro", "body"]


class Plan(BaseModel):
    summary: str
    sections: list[Section]
    tags: list[str] = Field(min_length=1, max_length=2)
    notes: str | None = None


class Node(BaseModel):
    name: str
    children: list[Node]


def chat(fake: FakeLLM, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="fake-model", base_url=fake.base_url, api_key="test-key", max_retries=0, **kwargs
    )


async def test_text_reply(fake_llm: FakeLLM) -> None:
    reply = await chat(fake_llm).ainvoke([("system", "Be brief."), ("user", "Hello there")])

    assert reply.content == "Fake answer to: Hello there"
    assert reply.usage_metadata is not None and reply.usage_metadata["total_tokens"] > 0


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
async def test_structured_output_is_valid(fake_llm: FakeLLM, method: str) -> None:
    fake_llm.add_rules({"schema": "Plan", "items": 2})
    structured = chat(fake_llm).with_structured_output(Plan, method=method)

    plan = await structured.ainvoke("Plan a report on tides")

    assert isinstance(plan, Plan)
    assert plan.summary == "Fake summary for: Plan a report on tides"
    assert [s.title for s in plan.sections] == [
        "Fake title 1 for: Plan a report on tides",
        "Fake title 2 for: Plan a report on tides",
    ]
    assert plan.sections[0].words == 50
    assert plan.sections[0].kind == "intro"
    assert len(plan.sections[0].description) == 30
    assert fake_llm.log()[0]["schema"] == "Plan"


async def test_default_items_are_clamped_to_schema_bounds(fake_llm: FakeLLM) -> None:
    fake_llm.configure(default_items=4)

    plan = await chat(fake_llm).with_structured_output(Plan, method="json_schema").ainvoke("go")

    assert len(plan.sections) == 4
    assert len(plan.tags) == 2


async def test_recursive_schema_terminates(fake_llm: FakeLLM) -> None:
    fake_llm.configure(default_items=1)

    node = await chat(fake_llm).with_structured_output(Node, method="json_schema").ainvoke("tree")

    depth = 0
    while node.children:
        node, depth = node.children[0], depth + 1
    assert 0 < depth < 10


async def test_streaming_text(fake_llm: FakeLLM) -> None:
    chunks = [chunk.content async for chunk in chat(fake_llm).astream("Stream this reply, please")]

    assert len(chunks) > 2
    assert "".join(chunks) == "Fake answer to: Stream this reply, please"
    assert fake_llm.log()[0]["stream"] is True


async def test_openai_wire_format(fake_llm: FakeLLM) -> None:
    pick = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 4}}}
    tools = [
        {"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "pick", "parameters": pick}},
    ]
    user = {"role": "user", "content": "hi"}
    async with openai.AsyncOpenAI(base_url=fake_llm.base_url, api_key="k") as client:
        forced = await client.chat.completions.create(
            model="m",
            messages=[user],
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "pick"}},
        )
        after_tool = await client.chat.completions.create(
            model="m",
            messages=[
                user,
                {"role": "assistant", "tool_calls": forced.choices[0].message.tool_calls},
                {"role": "tool", "tool_call_id": "call_fake_1", "content": "4"},
            ],
            tools=tools,
        )
        json_mode = await client.chat.completions.create(
            model="m", messages=[user], response_format={"type": "json_object"}
        )
        stream = await client.chat.completions.create(
            model="m", messages=[user], stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]

    assert forced.choices[0].finish_reason == "tool_calls"
    call = forced.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("pick", {"n": 4})
    assert after_tool.choices[0].message.content == "Fake answer to: hi"
    assert json.loads(json_mode.choices[0].message.content) == {"answer": "Fake answer for: hi"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Fake answer to: hi"
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


async def test_rule_response_is_returned_verbatim(fake_llm: FakeLLM) -> None:
    canned = {"summary": "s", "sections": [], "tags": ["t"], "notes": None}
    fake_llm.add_rules({"match": "capital", "response": "Paris."}, {"response": canned})
    llm = chat(fake_llm)

    text = await llm.ainvoke("What is the capital of France?")
    plan = await llm.with_structured_output(Plan, method="json_schema").ainvoke("Plan it")

    assert text.content == "Paris."
    assert plan == Plan.model_validate(canned)


async def test_first_live_matching_rule_wins_and_times_exhausts_it(fake_llm: FakeLLM) -> None:
    fake_llm.add_rules(
        {"match": "alpha", "fault": "500", "times": 1},
        {"match": "alpha", "response": "second"},
        {"response": "fallback"},
    )
    llm = chat(fake_llm)

    with pytest.raises(openai.InternalServerError):
        await llm.ainvoke("alpha")
    assert (await llm.ainvoke("alpha")).content == "second"
    assert (await llm.ainvoke("beta")).content == "fallback"
    assert [(r["fault"], r["status"]) for r in fake_llm.log()] == [
        ("500", 500),
        (None, 200),
        (None, 200),
    ]


async def test_server_error_fault(fake_llm: FakeLLM) -> None:
    fake_llm.add_rules({"fault": "500"})

    with pytest.raises(openai.InternalServerError):
        await chat(fake_llm).ainvoke("x")


async def test_rate_limit_fault_carries_retry_after(fake_llm: FakeLLM) -> None:
    fake_llm.add_rules({"fault": "429", "retry_after": 7})

    with pytest.raises(openai.RateLimitError) as caught:
        await chat(fake_llm).ainvoke("x")

    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("method", "fault", "error"),
    [
        ("json_schema", "invalid_json", ValidationError),
        ("json_schema", "schema_violation", ValidationError),
        ("json_schema", "empty", ValueError),
        ("function_calling", "schema_violation", ValidationError),
        # Unparseable or missing tool arguments are NOT errors: the parser returns None.
        ("function_calling", "invalid_json", None),
        ("function_calling", "empty", None),
    ],
)
async def test_broken_structured_output(
    fake_llm: FakeLLM, method: str, fault: str, error: type[Exception] | None
) -> None:
    fake_llm.add_rules({"fault": fault})
    structured = chat(fake_llm).with_structured_output(Plan, method=method)

    if error is None:
        assert await structured.ainvoke("x") is None
        return
    with pytest.raises(error) as caught:
        await structured.ainvoke("x")
    assert caught.type is error


async def test_hang_is_cut_by_client_timeout(fake_llm: FakeLLM) -> None:
    fake_llm.add_rules({"fault": "hang"})
    start = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        await chat(fake_llm, timeout=0.5).ainvoke("x")

    assert time.monotonic() - start < 2
    for _ in range(100):  # the server notices the disconnect shortly after
        if fake_llm.log()[0]["status"] == 499:
            break
        await asyncio.sleep(0.02)
    assert fake_llm.log()[0]["status"] == 499
    assert fake_llm.stats()["in_flight"] == 0


async def test_latency_overlaps_concurrent_requests(fake_llm: FakeLLM) -> None:
    latency = 0.3
    fake_llm.configure(latency=latency)
    llm = chat(fake_llm)
    start = time.monotonic()

    await asyncio.gather(*(llm.ainvoke(f"question {i}") for i in range(5)))

    wall = time.monotonic() - start
    assert 0.95 * latency <= wall < 0.6 * 5 * latency
    stats = fake_llm.stats()
    assert (stats["requests"], stats["in_flight"], stats["peak_in_flight"]) == (5, 0, 5)
    assert stats["cpu_s"] > 0


async def test_requests_from_before_a_reset_are_not_counted(fake_llm: FakeLLM) -> None:
    fake_llm.configure(latency=0.3)
    pending = asyncio.create_task(chat(fake_llm).ainvoke("straggler"))
    for _ in range(100):
        if fake_llm.stats()["in_flight"]:
            break
        await asyncio.sleep(0.01)
    assert fake_llm.stats()["in_flight"] == 1

    fake_llm.reset()
    await pending

    stats = fake_llm.stats()
    assert (stats["requests"], stats["in_flight"], stats["peak_in_flight"]) == (0, 0, 0)


async def test_rule_latency_overrides_and_reset_restores_default(fake_llm: FakeLLM) -> None:
    fake_llm.configure(latency=10)
    fake_llm.add_rules({"match": "slow", "latency": 0.2})

    await chat(fake_llm).ainvoke("slow one")
    record = fake_llm.log()[0]
    fake_llm.reset()
    await chat(fake_llm).ainvoke("fast one")

    assert 0.19 <= record["t_end"] - record["t_start"] < 1  # uvloop timers are ms-granular
    assert fake_llm.stats()["requests"] == 1


async def test_log_records_requests(fake_llm: FakeLLM) -> None:
    llm = chat(fake_llm, temperature=0.2, max_tokens=50)
    messages = [("system", "You plan reports."), ("user", "Plan a report on tides")]

    await llm.with_structured_output(Plan, method="json_schema").ainvoke(messages)
    await llm.ainvoke("Just chat")

    first, second = fake_llm.log()
    assert first["seq"] == 1 and second["seq"] == 2
    assert first["schema"] == "Plan" and second["schema"] is None
    assert first["last_user"] == "Plan a report on tides"
    assert first["system"] == "You plan reports."
    assert (first["model"], first["temperature"], first["status"]) == ("fake-model", 0.2, 200)
    assert (first["max_tokens"], first["max_completion_tokens"]) == (None, 50)
    assert first["t_start"] <= first["t_end"] <= time.monotonic()
    assert fake_llm.requests_matching(schema="Plan") == [first]
    assert fake_llm.requests_matching("chat") == [second]
    assert fake_llm.requests_matching("plan reports") == [first]


def test_invalid_rules_are_rejected(fake_llm: FakeLLM) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake_llm.add_rules({"fault": "explode"})
    with pytest.raises(ValueError, match="unknown rule keys"):
        fake_llm.add_rules({"matches": "typo"})


def at(base_url: str) -> ChatOpenAI:
    return ChatOpenAI(model="fake-model", base_url=base_url, api_key="test-key", max_retries=0)


async def test_a_process_left_by_an_earlier_test_neither_answers_nor_shows_in_the_log(
    fake_llm: FakeLLM,
) -> None:
    earlier = fake_llm.base_url  # what a process this test starts is given
    await chat(fake_llm).ainvoke("Hello from the first test")

    fake_llm.begin_test()  # the next test
    fake_llm.add_rules({"match": "Hello", "fault": "500", "times": 1})
    with pytest.raises(openai.APIStatusError) as refused:
        await at(earlier).ainvoke("Hello from a leftover process")
    with pytest.raises(openai.InternalServerError):  # the rule was left for this test's call
        await at(fake_llm.base_url).ainvoke("Hello from this test")
    reply = await at(fake_llm.shared_url).ainvoke("Hello from a shared server")

    assert refused.value.status_code == 410
    assert [r["last_user"] for r in fake_llm.log()] == [
        "Hello from this test",
        "Hello from a shared server",
    ]
    assert reply.content == "Fake answer to: Hello from a shared server"
