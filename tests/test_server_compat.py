"""Each LangGraph SDK call docs/server.md uses, on ``langgraph dev`` and on Aegra.

Every test runs on both servers and asserts what each does; where they differ the test says
how (docs/production.md lists the differences). The Aegra replica is one of the session's
(tests/conftest.py), which may be the one a kill test left alive.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.errors import NotFoundError

from tests.aegra_cluster import AegraCluster, resume_thread
from tests.fake_llm import FakeLLM
from tests.fanout_cli import fanout, json_result
from tests.test_durability import hang_once, research_calls, wait_for_in_flight

pytestmark = [
    pytest.mark.server,
    pytest.mark.aegra,
    pytest.mark.xdist_group("aegra"),
    pytest.mark.timeout(180),
]

DEV, AEGRA = "langgraph dev", "aegra"
TOPIC = "Compatible servers"
ONE_RUN = {"plan": 1, "q1": 1, "q2": 1, "q3": 1, "writer": 1}
QUESTIONS = [f"Fake questions {i} for: Topic: {TOPIC}" for i in (1, 2, 3)]


@pytest.fixture(params=[DEV, AEGRA])
def server(request: pytest.FixtureRequest, fake_llm: FakeLLM) -> str:
    """Which server the test runs on."""
    return str(request.param)


@pytest.fixture
def client(request: pytest.FixtureRequest, server: str) -> SyncLangGraphClient:
    """An SDK client of ``server``."""
    if server == DEV:
        return request.getfixturevalue("langgraph_dev").sync_client()
    cluster: AegraCluster = request.getfixturevalue("aegra_cluster")
    (url, *_) = [replica.url for replica in cluster.replicas if replica.alive()]
    return get_sync_client(url=url)


def research(client: SyncLangGraphClient, thread: str | None, **kwargs: Any) -> dict[str, Any]:
    """``runs.wait`` of the research graph on ``thread``: the output."""
    output = client.runs.wait(thread, "research", **kwargs)
    assert isinstance(output, dict)
    return output


def answered(client: SyncLangGraphClient, thread: str) -> list[str]:
    """The names of the thread's pending tasks whose result is saved."""
    tasks = client.threads.get_state(thread)["tasks"]
    return [task["name"] for task in tasks if task.get("result") is not None]


def test_assistants_search_lists_the_three_graphs(client: SyncLangGraphClient) -> None:
    found = client.assistants.search(limit=100)
    assert {a["graph_id"] for a in found} == {"evaluation", "article", "research"}


def test_get_schemas_by_assistant_id(client: SyncLangGraphClient) -> None:
    (assistant,) = client.assistants.search(graph_id="research")
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    assert schemas["input_schema"] is not None and schemas["context_schema"] is not None
    assert schemas["input_schema"]["required"] == ["topic"]
    assert "review_plan" in schemas["context_schema"]["properties"]


def test_get_graph_by_graph_name(client: SyncLangGraphClient, server: str) -> None:
    if server == AEGRA:  # Aegra looks assistants up by id only here (the id works)
        with pytest.raises(NotFoundError):
            client.assistants.get_graph("research")
        (assistant,) = client.assistants.search(graph_id="research")
        drawn = client.assistants.get_graph(assistant["assistant_id"])
    else:
        drawn = client.assistants.get_graph("research")
    assert {"plan_research", "research_question", "write_report"} <= {
        n["id"] for n in drawn["nodes"]
    }


def test_runs_wait_without_a_thread(client: SyncLangGraphClient, fake_llm: FakeLLM) -> None:
    output = research(client, None, input={"topic": TOPIC})
    assert output["task_count"] == 3 and [f["question"] for f in output["findings"]] == QUESTIONS
    assert research_calls(fake_llm.log()) == ONE_RUN


def test_a_thread_keeps_the_run_state(client: SyncLangGraphClient, fake_llm: FakeLLM) -> None:
    thread = client.threads.create()["thread_id"]
    output = research(client, thread, input={"topic": TOPIC}, context={"max_tokens": 400})
    state = client.threads.get_state(thread)
    assert state["next"] == []
    assert {key: state["values"][key] for key in output} == output
    assert {r["max_tokens"] or r["max_completion_tokens"] for r in fake_llm.log()} == {400}


def test_runs_stream_updates_one_per_node(client: SyncLangGraphClient, server: str) -> None:
    thread = client.threads.create()["thread_id"]
    parts = list(
        client.runs.stream(thread, "research", input={"topic": TOPIC}, stream_mode="updates")
    )
    nodes = [node for part in parts if part.event == "updates" for node in part.data]
    assert nodes[0] == "plan_research" and nodes[-2:] == ["check_spending", "write_report"]
    assert sorted(nodes[1:-2]) == ["research_question"] * 3
    events = {part.event for part in parts}
    # Aegra closes the stream with an `end` event of its own.
    assert events == (
        {"metadata", "updates", "end"} if server == AEGRA else {"metadata", "updates"}
    )


def test_runs_stream_messages_tuple_carries_worker_tokens(client: SyncLangGraphClient) -> None:
    parts = list(
        client.runs.stream(
            None, "research", input={"topic": TOPIC}, stream_mode=["messages-tuple", "values"]
        )
    )
    tokens = [part.data for part in parts if part.event == "messages"]
    by_question: dict[str, str] = {}
    for chunk, metadata in tokens:
        if metadata["langgraph_node"] == "research_question":
            by_question[metadata["question"]] = by_question.get(metadata["question"], "") + (
                chunk["content"] or ""
            )
    assert sorted(by_question) == QUESTIONS
    assert all(text.startswith("Fake answer to:") for text in by_question.values())
    (last_values, *_) = [p.data for p in reversed(parts) if p.event == "values"]
    assert last_values["task_count"] == 3


def test_plan_review_pauses_and_a_resume_command_continues(
    client: SyncLangGraphClient, fake_llm: FakeLLM
) -> None:
    thread = client.threads.create()["thread_id"]
    paused = research(client, thread, input={"topic": TOPIC}, context={"review_plan": True})
    assert [i["value"] for i in paused["__interrupt__"]] == [{"questions": QUESTIONS}]
    assert client.threads.get(thread)["status"] == "interrupted"
    state = client.threads.get_state(thread)
    assert [i["value"] for t in state["tasks"] for i in t["interrupts"]] == [
        {"questions": QUESTIONS}
    ]

    final = research(client, thread, command={"resume": {"approve": True}})
    assert final["review"] == {"decision": "approved", "reason": ""}
    assert research_calls(fake_llm.log()) == ONE_RUN
    assert client.threads.get(thread)["status"] == "idle"


def test_threads_create_with_an_id_if_exists_do_nothing(client: SyncLangGraphClient) -> None:
    thread = "00000000-0000-4000-8000-00000000c0de"
    metadata = {"graph_id": "research"}
    first = client.threads.create(thread_id=thread, if_exists="do_nothing", metadata=metadata)
    again = client.threads.create(thread_id=thread, if_exists="do_nothing", metadata=metadata)
    assert first["thread_id"] == again["thread_id"] == thread
    assert client.threads.get(thread)["metadata"]["graph_id"] == "research"
    client.threads.delete(thread)


def test_a_run_with_no_input_finishes_a_thread_cut_short(
    client: SyncLangGraphClient, server: str, fake_llm: FakeLLM
) -> None:
    fake_llm.add_rules(*hang_once(f"Fake questions 2 for: Topic: {TOPIC}"))
    thread = client.threads.create()["thread_id"]
    run = client.runs.create(thread, "research", input={"topic": TOPIC})
    wait_for_in_flight(fake_llm, 1)  # question 2 hangs
    deadline = time.monotonic() + 30
    while len(answered(client, thread)) < 2:  # questions 1 and 3 are saved
        assert time.monotonic() < deadline, client.threads.get_state(thread)
        time.sleep(0.1)
    client.runs.cancel(thread, run["run_id"], wait=True)
    assert client.threads.get_state(thread)["next"] == ["research_question"]  # question 2

    if server == AEGRA:  # a run needs an input, a command or a checkpoint: give the latest
        with pytest.raises(httpx.HTTPStatusError) as refused:
            client.runs.wait(thread, "research", input=None)
        assert refused.value.response.status_code == 422
        output = resume_thread(client, thread, "research")
    else:
        output = research(client, thread, input=None)
    assert output["task_count"] == 3
    assert research_calls(fake_llm.log()) == {**ONE_RUN, "q2": 2}  # only question 2 again


def test_invalid_input_is_a_run_error(
    client: SyncLangGraphClient, server: str, fake_llm: FakeLLM
) -> None:
    # Aegra keeps the error's message but not its type: "Error" instead of InvalidInputError.
    kind = "Error" if server == AEGRA else "InvalidInputError"
    with pytest.raises(Exception, match=f"^{kind}: invalid ResearchInput: topic: String should"):
        client.runs.wait(None, "research", input={"topic": ""})
    assert fake_llm.log() == []


BAD_UPDATES = {
    "bidi-override": ({"topic": "Heat \u202epumps"}, "U+202E at position 5"),
    "one-megabyte": ({"topic": "x" * 1_000_000}, "at most 2000 characters"),
    "wrong-type": ({"topic": 42}, "Input should be a valid string"),
    "nul": ({"topic": "Heat\u0000pumps"}, "U+0000 at position 4"),
    "unknown-field": ({"nope": "x"}, "no state field nope"),
    "nul-in-a-finding": ({"report": "Heat\u0000pumps"}, "U+0000 at position 4"),
}


@pytest.mark.parametrize("update", BAD_UPDATES)
def test_a_state_update_the_input_check_refuses_is_refused_and_stores_nothing(
    client: SyncLangGraphClient, server: str, update: str
) -> None:
    values, reason = BAD_UPDATES[update]
    thread = client.threads.create()["thread_id"]
    research(client, thread, input={"topic": TOPIC})
    before = client.threads.get_state(thread)

    with pytest.raises(httpx.HTTPStatusError) as refused:
        client.threads.update_state(thread, values)

    answer = refused.value.response
    # langgraph dev answers 400; Aegra 422 for a NUL (the project's middleware), else 500
    # with the check's message (it answers every failed update so).
    nul = any("\x00" in str(value) for value in values.values())
    expected = {DEV: 400, AEGRA: 422 if nul else 500}[server]
    assert answer.status_code == expected, answer.text
    assert reason in answer.text
    assert "pumps" not in answer.text and "xxxx" not in answer.text  # the value is not echoed
    after = client.threads.get_state(thread)
    assert after["checkpoint"] == before["checkpoint"] and after["values"] == before["values"]


def test_a_nul_in_a_run_input_is_refused_with_the_input_checks_message(
    client: SyncLangGraphClient, server: str, fake_llm: FakeLLM
) -> None:
    reason = (
        "invalid ResearchInput: topic: must not contain control characters (U+0000 at position 4)"
    )
    if server == AEGRA:  # refused before a run exists (Aegra would strip the NUL and run)
        with pytest.raises(httpx.HTTPStatusError) as refused:
            client.runs.wait(None, "research", input={"topic": "Heat\u0000pumps"})
        assert refused.value.response.status_code == 422
        assert refused.value.response.json() == {"detail": reason}
    else:
        with pytest.raises(Exception, match=f"^InvalidInputError: {re.escape(reason)}$"):
            client.runs.wait(None, "research", input={"topic": "Heat\u0000pumps"})
    assert fake_llm.log() == []


def test_fanout_lists_and_shows_the_runs_the_server_made(
    request: pytest.FixtureRequest,
    client: SyncLangGraphClient,
    server: str,
    fake_llm: FakeLLM,
    tmp_path: Path,
) -> None:
    if server == DEV:
        db = str(request.getfixturevalue("langgraph_dev").workdir / "checkpoints.sqlite")
    else:
        db = request.getfixturevalue("aegra_cluster").database_url
    thread = client.threads.create()["thread_id"]
    research(client, thread, input={"topic": f"Listed by fanout on {server}"})

    listed = fanout(fake_llm, tmp_path, "runs", "--db", db, "--json", "--limit", "100")
    shown = fanout(fake_llm, tmp_path, "show", thread, "--db", db, "--json")

    assert listed.returncode == 0, listed.stderr
    rows = {row["thread_id"]: row for row in json.loads(listed.stdout)}
    door = {DEV: "langgraph-api", AEGRA: "aegra"}[server]
    assert rows[thread] | {"started": ""} == {
        "thread_id": thread,
        "graph": "research",
        "status": "done",
        "started": "",
        "door": door,
        "input": f"Listed by fanout on {server}",
    }
    state = json_result(shown)
    assert state["door"] == door and state["status"] == "done"
    assert state["values"]["task_count"] == 3
