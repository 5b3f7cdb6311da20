"""Plan review and worker tokens through a real ``langgraph dev`` process (what Studio uses).

A run with ``context: {"review_plan": true}`` pauses: the thread is ``interrupted`` and its
state's ``tasks[].interrupts`` hold the plan; a run with ``command: {"resume": ...}``
continues it. ``stream_mode: "messages-tuple"`` streams every LLM token with its metadata.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk.client import SyncLangGraphClient

from tests.fake_llm import FakeLLM
from tests.langgraph_server import Server, server_env, start_server
from tests.test_server import DOCUMENTED_URL, _wait_for_flush, server_doc_blocks

pytestmark = pytest.mark.server

TOPIC = {"topic": "Heat pumps in cold climates"}
REVIEW = {"review_plan": True}
PLANNED = [f"Fake questions {i} for: Topic: {TOPIC['topic']}" for i in (1, 2, 3)]


@pytest.fixture
def server(langgraph_dev: Server) -> Server:
    """The session's ``langgraph dev`` process."""
    return langgraph_dev


@pytest.fixture
def client(server: Server, fake_llm: FakeLLM) -> SyncLangGraphClient:
    return server.sync_client()


def researchers(fake: FakeLLM) -> list[str]:
    """The questions the researchers were asked, in arrival order."""
    return [
        r["last_user"].split("\n\n", 1)[1]
        for r in fake.log()
        if r["last_user"].startswith("Research question")
    ]


def pause(client: SyncLangGraphClient) -> tuple[str, dict[str, Any]]:
    """A new thread whose research run waits at its review; the thread id and the run output."""
    thread = client.threads.create()["thread_id"]
    output = client.runs.wait(thread, "research", input=TOPIC, context=REVIEW)
    assert isinstance(output, dict)
    return thread, output


def interrupts(client: SyncLangGraphClient, thread: str) -> list[Any]:
    """The interrupt values in the thread's state (``GET /threads/{id}/state``)."""
    state = client.threads.get_state(thread)
    return [i["value"] for task in state["tasks"] for i in task["interrupts"]]


def test_a_reviewed_run_pauses_and_a_resume_command_runs_the_edited_plan(
    client: SyncLangGraphClient, fake_llm: FakeLLM
) -> None:
    thread, output = pause(client)

    assert output["review"] == {"decision": "pending", "reason": ""}
    assert [i["value"] for i in output["__interrupt__"]] == [{"questions": PLANNED}]
    assert client.threads.get(thread)["status"] == "interrupted"
    assert client.threads.get_state(thread)["next"] == ["review_questions"]
    assert interrupts(client, thread) == [{"questions": PLANNED}]
    assert researchers(fake_llm) == []

    edited = ["How cold is too cold?", "What does it cost?"]
    final = client.runs.wait(thread, "research", command={"resume": {"questions": edited}})

    assert isinstance(final, dict)
    assert final["review"] == {"decision": "edited", "reason": ""}
    assert [f["question"] for f in final["findings"]] == edited
    assert sorted(researchers(fake_llm)) == sorted(edited)
    assert client.threads.get(thread)["status"] == "idle"


def test_a_bad_resume_leaves_the_thread_interrupted_with_the_reason(
    client: SyncLangGraphClient, fake_llm: FakeLLM
) -> None:
    thread, _ = pause(client)

    again = client.runs.wait(thread, "research", command={"resume": {"questions": ["One?"]}})

    assert isinstance(again, dict)
    (value,) = [i["value"] for i in again["__interrupt__"]]
    assert "questions: List should have at least 2 items" in value["error"]
    assert client.threads.get(thread)["status"] == "interrupted"
    assert interrupts(client, thread) == [value]
    assert researchers(fake_llm) == []

    final = client.runs.wait(thread, "research", command={"resume": {"approve": True}})

    assert isinstance(final, dict) and final["review"]["decision"] == "approved"
    assert sorted(researchers(fake_llm)) == PLANNED


def test_rejecting_over_the_api_ends_the_run_without_workers(
    client: SyncLangGraphClient, fake_llm: FakeLLM
) -> None:
    thread, _ = pause(client)

    final = client.runs.wait(
        thread, "research", command={"resume": {"reject": True, "reason": "off topic"}}
    )

    assert isinstance(final, dict)
    assert final["review"] == {"decision": "rejected", "reason": "off topic"}
    assert final["report"] == "" and final["task_count"] == 0 and final["findings"] == []
    assert researchers(fake_llm) == []
    assert client.threads.get(thread)["status"] == "idle"


def test_review_plan_is_in_the_context_schema(client: SyncLangGraphClient) -> None:
    (assistant,) = client.assistants.search(graph_id="article")
    schema = client.assistants.get_schemas(assistant["assistant_id"])["context_schema"]

    assert schema is not None
    field = schema["properties"]["review_plan"]
    assert field["type"] == "boolean" and field["default"] is False
    assert "Pause after planning" in field["description"]


# --- the curl examples of docs/server.md ------------------------------------------------------


def _docs_block(marker: str) -> str:
    (block,) = [b for b in server_doc_blocks("bash") if marker in b]
    return block


def _run(block: str, server: Server) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.replace(DOCUMENTED_URL, server.url)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{block}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def sse_events(text: str) -> list[tuple[str, Any]]:
    """``(event, data)`` of every server-sent event in ``text``."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(re.findall(r"^(event|data): (.*)$", block, flags=re.M))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields.get("data", "null"))))
    return events


def test_docs_messages_tuple_example_streams_each_researchers_tokens(
    server: Server, fake_llm: FakeLLM
) -> None:
    events = sse_events(_run(_docs_block('"messages-tuple"'), server))

    tokens: dict[str, list[str]] = defaultdict(list)
    questions = {}
    for event, data in events:
        if event == "messages":
            chunk, metadata = data
            if metadata["langgraph_node"] == "research_question":
                tokens[metadata["langgraph_checkpoint_ns"]].append(chunk["content"])
                questions[metadata["langgraph_checkpoint_ns"]] = metadata["question"]
    (values,) = [data for event, data in events if event == "values" and "report" in data]
    answers = {f["question"]: f["answer"] for f in values["findings"]}
    assert len(tokens) == 3
    for task, pieces in tokens.items():
        assert len(pieces) > 3  # token by token, not one message
        assert "".join(pieces) == answers[questions[task]]


def test_docs_review_example_pauses_then_resumes(server: Server, fake_llm: FakeLLM) -> None:
    out = _run(_docs_block('"review_plan": true'), server)

    assert '"__interrupt__"' in out and '"interrupted"' in out
    assert '"decision":"edited"' in out
    assert len(researchers(fake_llm)) == 2


# --- a server killed while a run waits for its review -----------------------------------------


def test_a_paused_run_survives_kill_9_and_resumes_at_the_review(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    env = server_env(fake_llm, tmp_path / "checkpoints.sqlite")
    first = start_server(tmp_path, env)
    try:
        client = first.sync_client()
        thread, _ = pause(client)
        _wait_for_flush(first, after=time.time())  # the server's own thread list is on disk
    finally:
        first.kill(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL

    fake_llm.reset()
    second = start_server(tmp_path, env)
    try:
        client = second.sync_client()
        assert client.threads.get(thread)["status"] == "interrupted"
        assert interrupts(client, thread) == [{"questions": PLANNED}]

        final = client.runs.wait(thread, "research", command={"resume": {"approve": True}})

        assert isinstance(final, dict) and final["task_count"] == 3
        assert [r["schema"] for r in fake_llm.log()] == [None] * 4  # no second plan
        assert sorted(researchers(fake_llm)) == PLANNED
    finally:
        second.kill()
