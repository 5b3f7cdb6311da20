"""The graphs behind a real ``langgraph dev`` process: assistants, schemas, runs, threads.

Every server here is a ``langgraph dev`` subprocess on a free port (2024 may be taken), in its
own working directory (its ``.langgraph_api/`` files and an absent ``.env``), with a config
derived from the project's ``langgraph.json`` (same graphs, descriptions and checkpointer; paths
made absolute), and the suite's fake LLM as the model. Thread state lives in the SQLite file
named by $FANOUT_DB through ``langgraph_fanout/server/checkpointer.py``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_cli.config import validate_config_file
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.errors import NotFoundError

from langgraph_fanout.production.postgres import free_port
from nodes.evaluation import BRANCHES
from state.context import Context
from tests.docs import DOCS, blocks
from tests.fake_llm import FakeLLM
from tests.fanout_cli import saved_rows
from tests.langgraph_server import (
    CONFIG,
    PROJECT_ROOT,
    START_TIMEOUT,
    Server,
    dev_command,
    server_env,
    start_server,
)

pytestmark = pytest.mark.server

GRAPHS = {"evaluation", "article", "research"}
DOCUMENTED_URL = "http://127.0.0.1:2024"
FAKE_LATENCY = 0.1
N_CONCURRENT = 20


# --- the server ------------------------------------------------------------------------------


@pytest.fixture
def server(langgraph_dev: Server) -> Server:
    """The session's ``langgraph dev`` process."""
    return langgraph_dev


@pytest.fixture
def client(server: Server, fake_llm: FakeLLM) -> SyncLangGraphClient:
    """A synchronous SDK client of the session's server, the fake LLM reset."""
    return server.sync_client()


# --- expected outputs --------------------------------------------------------------------------

INPUTS = {
    "evaluation": {"text": "A short, friendly story about a cat who learns to share."},
    "article": {"topic": "Community gardens"},
    "research": {"topic": "Heat pumps in cold climates"},
}


def check_output(graph: str, output: dict[str, Any], items: int = 3) -> None:
    """``output`` is what ``graph`` returns for its entry in INPUTS (the fake makes ``items``)."""
    if graph == "evaluation":
        assert set(output) == {"is_appropriate", "summary", "evaluations", "votes"}
        assert isinstance(output["is_appropriate"], bool)
        assert [e["evaluator"] for e in output["evaluations"]] == list(BRANCHES.values())
        assert output["votes"] == sum(e["is_appropriate"] for e in output["evaluations"])
        assert output["summary"]
    elif graph == "article":
        assert set(output) == {"sections", "completed_sections", "article", "review"}
        assert len(output["sections"]) == len(output["completed_sections"]) == items
        names = [s["name"] for s in output["sections"]]
        assert [s["name"] for s in output["completed_sections"]] == names
        assert output["article"].startswith(f"# {INPUTS['article']['topic']}")
    else:
        assert set(output) == {"report", "task_count", "findings", "review"}
        assert output["task_count"] == len(output["findings"]) == items
        assert output["report"]


# --- configuration -----------------------------------------------------------------------------


def test_langgraph_json_is_valid_and_points_at_real_objects() -> None:
    config = validate_config_file(CONFIG)
    assert set(config["graphs"]) == GRAPHS
    for graph_id, spec in config["graphs"].items():
        path, _, variable = spec["path"].rpartition(":")
        assert (PROJECT_ROOT / path).is_file(), graph_id
        assert variable == graph_id  # the factory in langgraph_fanout/server/graphs.py
        assert len(spec["description"]) > 40, graph_id
    path, _, name = config["checkpointer"]["path"].rpartition(":")
    assert (PROJECT_ROOT / path).is_file()
    assert name == "checkpointer"
    raw = json.loads(CONFIG.read_text())
    assert raw["$schema"] and raw["env"] == ".env" and raw["dependencies"] == ["."]


# --- assistants and schemas --------------------------------------------------------------------


def test_assistants_search_lists_the_three_graphs(client: SyncLangGraphClient) -> None:
    assistants = client.assistants.search(limit=100)
    assert {a["graph_id"] for a in assistants} == GRAPHS
    for assistant in assistants:
        assert assistant["name"] == assistant["graph_id"]
        assert len(assistant["description"] or "") > 40


def _field_descriptions(schema: dict[str, Any]) -> dict[str, str]:
    return {name: prop.get("description", "") for name, prop in schema["properties"].items()}


@pytest.mark.parametrize(
    ("graph", "input_field", "output_fields"),
    [
        ("evaluation", "text", {"is_appropriate", "summary", "evaluations", "votes"}),
        ("article", "topic", {"sections", "completed_sections", "article", "review"}),
        ("research", "topic", {"report", "task_count", "findings", "review"}),
    ],
)
def test_get_schemas_returns_typed_input_output_and_context(
    client: SyncLangGraphClient, graph: str, input_field: str, output_fields: set[str]
) -> None:
    (assistant,) = client.assistants.search(graph_id=graph)
    schemas = client.assistants.get_schemas(assistant["assistant_id"])

    input_schema = schemas["input_schema"]
    assert input_schema is not None
    assert input_schema["required"] == [input_field]
    field = input_schema["properties"][input_field]
    assert field["type"] == "string" and field["minLength"] == 1 and field["description"]

    output_schema = schemas["output_schema"]
    assert output_schema is not None
    descriptions = _field_descriptions(output_schema)
    assert set(descriptions) == output_fields
    assert all(descriptions.values()), descriptions

    context_schema = schemas["context_schema"]
    assert context_schema is not None and context_schema["title"] == "Context"
    descriptions = _field_descriptions(context_schema)
    assert set(descriptions) == set(Context.__dataclass_fields__)
    assert all(descriptions.values()), descriptions
    assert context_schema["properties"]["max_sections"]["type"] == "integer"
    assert context_schema["properties"]["max_sections"]["default"] == Context().max_sections
    assert context_schema["properties"]["max_sections"]["minimum"] == 1
    assert context_schema["properties"]["max_tokens"]["minimum"] == 1
    assert context_schema["properties"]["timeout"]["exclusiveMinimum"] == 0


# --- runs and threads --------------------------------------------------------------------------


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_runs_wait_on_a_new_thread_returns_the_output(
    client: SyncLangGraphClient, graph: str
) -> None:
    thread = client.threads.create()
    output = client.runs.wait(thread["thread_id"], graph, input=INPUTS[graph])
    assert isinstance(output, dict)
    check_output(graph, output)


def test_runs_wait_without_a_thread_over_plain_http(server: Server, fake_llm: FakeLLM) -> None:
    body = {"assistant_id": "research", "input": INPUTS["research"]}
    response = httpx.post(f"{server.url}/runs/wait", json=body, timeout=60, trust_env=False)
    assert response.status_code == 200
    check_output("research", response.json())


def _stream_updates(
    client: SyncLangGraphClient, graph: str, stream_mode: str = "updates"
) -> list[dict[str, Any]]:
    thread = client.threads.create()
    parts = client.runs.stream(
        thread["thread_id"], graph, input=INPUTS[graph], stream_mode=stream_mode
    )
    return [part.data for part in parts if part.event == stream_mode]


def test_stream_updates_of_evaluation_has_one_update_per_branch(
    client: SyncLangGraphClient,
) -> None:
    updates = _stream_updates(client, "evaluation")
    nodes = Counter(node for update in updates for node in update)
    assert nodes == Counter({**dict.fromkeys(BRANCHES, 1), "check_spending": 1, "aggregate": 1})
    assert list(updates[-1]) == ["aggregate"]
    # The server streams only output-schema keys: a branch's own write (`verdicts`) is not one,
    # so its update is null; the aggregate's carries every branch's evaluation.
    assert all(update[node] is None for update in updates[:-1] for node in update)
    check_output("evaluation", updates[-1]["aggregate"])


def test_stream_tasks_of_evaluation_shows_each_branch_verdict(
    client: SyncLangGraphClient,
) -> None:
    results = [t for t in _stream_updates(client, "evaluation", "tasks") if "result" in t]
    verdicts = {
        t["name"]: t["result"]["verdicts"][0]["evaluator"]
        for t in results
        if t["name"] not in ("check_spending", "aggregate")
    }
    assert verdicts == BRANCHES


@pytest.mark.parametrize(
    ("graph", "planner", "worker", "writer", "key"),
    [
        ("research", "plan_research", "research_question", "write_report", "findings"),
        ("article", "plan_sections", "write_section", "synthesize_article", "completed_sections"),
    ],
)
def test_stream_updates_has_one_update_per_worker(
    client: SyncLangGraphClient, graph: str, planner: str, worker: str, writer: str, key: str
) -> None:
    updates = _stream_updates(client, graph)
    nodes = [next(iter(u)) for u in updates]
    assert nodes == [planner, worker, worker, worker, "check_spending", writer]
    worker_writes = [u[worker][key] for u in updates[1:4]]
    assert all(len(write) == 1 for write in worker_writes)
    assert len({json.dumps(write) for write in worker_writes}) == 3


def test_thread_state_and_history_show_the_finished_run(client: SyncLangGraphClient) -> None:
    thread = client.threads.create()
    output = client.runs.wait(thread["thread_id"], "research", input=INPUTS["research"])
    assert isinstance(output, dict)

    state = client.threads.get_state(thread["thread_id"])
    assert state["next"] == []
    assert state["values"]["topic"] == INPUTS["research"]["topic"]
    for key in ("report", "task_count", "findings"):
        assert state["values"][key] == output[key]

    history = client.threads.get_history(thread["thread_id"])
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    assert [h["metadata"]["step"] for h in history] == list(range(len(history) - 2, -2, -1))
    assert {"plan_research", "research_question"} <= {
        task["name"] for h in history for task in h["tasks"]
    }
    assert client.threads.get(thread["thread_id"])["status"] == "idle"


# --- run settings ------------------------------------------------------------------------------


def test_context_sets_the_model_and_max_sections(
    client: SyncLangGraphClient, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(default_items=5)
    context = {"model": "openai:other-model", "max_sections": 2, "not_a_setting": 1}
    output = client.runs.wait(None, "article", input=INPUTS["article"], context=context)
    assert isinstance(output, dict)
    check_output("article", output, items=2)
    assert {r["model"] for r in fake_llm.log()} == {"other-model"}


def test_context_sets_a_model_per_role(client: SyncLangGraphClient, fake_llm: FakeLLM) -> None:
    context = {"worker_model": "openai:worker-model", "writer_model": "openai:writer-model"}
    output = client.runs.wait(None, "research", input=INPUTS["research"], context=context)
    assert isinstance(output, dict)
    check_output("research", output)
    by_schema = Counter((r["schema"], r["model"]) for r in fake_llm.log())
    assert by_schema == {
        ("ResearchPlan", "fake-model"): 1,
        (None, "worker-model"): 3,
        (None, "writer-model"): 1,
    }


def test_configurable_works_like_context(client: SyncLangGraphClient, fake_llm: FakeLLM) -> None:
    fake_llm.configure(default_items=5)
    config: Any = {"configurable": {"max_sections": 1, "temperature": 0.7}}
    output = client.runs.wait(None, "article", input=INPUTS["article"], config=config)
    assert isinstance(output, dict)
    check_output("article", output, items=1)
    assert {r["temperature"] for r in fake_llm.log()} == {0.7}


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"assistant_id": "research", "input": {}}, "topic: Field required"),
        (
            {"assistant_id": "research", "input": {"topic": ""}},
            "topic: String should have at least",
        ),
        ({"assistant_id": "research", "input": {"topic": " \n "}}, "topic: must not be empty"),
        (
            {"assistant_id": "research", "input": {"topic": 42}},
            "topic: Input should be a valid string",
        ),
        ({"assistant_id": "article", "input": {"topic": ["a"]}}, "topic: Input should be a valid"),
        ({"assistant_id": "evaluation", "input": {"txt": "hi"}}, "text: Field required"),
        (
            {"assistant_id": "evaluation", "input": {"text": "x" * 20_001}},
            "text: String should have at most",
        ),
        ({"assistant_id": "research", "input": "Bees"}, "Expected dict, got Bees"),
        ({"assistant_id": "research"}, "Received no input"),
        (
            {"assistant_id": "article", "input": {"topic": "Tea"}, "context": {"max_sections": 0}},
            "max_sections\n  Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_input_is_a_run_error_with_a_clear_message(
    server: Server, fake_llm: FakeLLM, body: dict[str, Any], message: str
) -> None:
    response = httpx.post(f"{server.url}/runs/wait", json=body, timeout=60, trust_env=False)
    assert response.status_code == 200, response.text
    error = response.json()["__error__"]
    assert message in error["message"], error
    assert fake_llm.log() == []  # refused before any LLM call


REFUSED = [
    ("research", {"input": {"topic": "a \x1b]0;owned\x07 b"}}, "control characters (U+001B"),
    ("evaluation", {"input": {"text": "x\x00y"}}, "control characters (U+0000"),
    ("article", {"input": {"topic": 42}}, "topic: Input should be a valid string"),
    ("article", {"input": {"topic": "tides \u202e"}}, "bidirectional control characters (U+202E"),
    ("research", {"command": {"update": {"topic": "\x1b"}}}, "control characters (U+001B"),
]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_refused_input_over_the_api_leaves_no_state(
    fake_llm: FakeLLM, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = str(tmp_path / "runs.sqlite")
    if backend == "postgres":
        db = str(request.getfixturevalue("postgres_url"))
    server = start_server(tmp_path, server_env(fake_llm, db))  # type: ignore[arg-type]
    try:
        client = server.sync_client()
        for graph, body, message in REFUSED:
            thread = client.threads.create()["thread_id"]
            response = httpx.post(
                f"{server.url}/threads/{thread}/runs/wait",
                json={"assistant_id": graph, **body},
                timeout=60,
                trust_env=False,
            )
            error = response.json()["__error__"]
            assert error["error"] == "InvalidInputError" and message in error["message"], error
            assert set(saved_rows(db, thread).values()) == {0}, (graph, body)
            assert client.threads.get_state(thread)["values"] == {}
        assert fake_llm.log() == []

        # Accepted: a right-to-left mark and a line separator (never printed raw by fanout).
        thread = client.threads.create()["thread_id"]
        topic = "tides \u200fשלום\u2028and more"
        output = client.runs.wait(thread, "research", input={"topic": topic})
        assert isinstance(output, dict) and output["task_count"] == 3
        assert client.threads.get_state(thread)["values"]["topic"] == topic
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"assistant_id": "no-such-graph", "input": {"topic": "x"}}, 422),
        ({"input": {"topic": "x"}}, 422),
        ({"assistant_id": "research", "input": {"topic": "x"}, "stream_mode": "bogus"}, 422),
        (
            {
                "assistant_id": "research",
                "input": {"topic": "x"},
                "context": {"model": "x"},
                "config": {"configurable": {"model": "y"}},
            },
            400,
        ),
    ],
)
def test_malformed_requests_are_4xx(server: Server, body: dict[str, Any], status: int) -> None:
    response = httpx.post(f"{server.url}/runs/wait", json=body, timeout=60, trust_env=False)
    assert response.status_code == status, response.text


def test_sdk_raises_the_run_error_and_the_server_keeps_serving(
    client: SyncLangGraphClient,
) -> None:
    with pytest.raises(Exception, match="InvalidInputError: invalid ResearchInput: topic"):
        client.runs.wait(None, "research", input={"topic": ""})
    output = client.runs.wait(None, "research", input=INPUTS["research"])
    assert isinstance(output, dict)
    check_output("research", output)


# --- concurrency -------------------------------------------------------------------------------


RUN_TIMEOUT = 60.0


async def _timed_runs(server: Server, n: int, concurrent: bool) -> float:
    """Wall seconds of ``n`` runs without a thread, one after the other or all at once."""
    client = server.client()
    body = INPUTS["evaluation"]

    async def one() -> None:
        run = client.runs.wait(None, "evaluation", input=body)
        output = await asyncio.wait_for(run, RUN_TIMEOUT)
        assert isinstance(output, dict)
        check_output("evaluation", output)

    start = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(one() for _ in range(n)))
    else:
        for _ in range(n):
            await one()
    wall = time.perf_counter() - start
    await client.aclose()
    return wall


async def test_concurrent_runs_all_succeed_in_far_less_than_n_times_one(
    server: Server, fake_llm: FakeLLM
) -> None:
    # Runs without a thread get a temporary one, deleted when they end: concurrent deletes raced
    # in the runtime and left clients waiting forever until langgraph_fanout/server/checkpointer.py
    # deferred them.
    fake_llm.configure(latency=FAKE_LATENCY)
    await _timed_runs(server, 1, concurrent=False)  # warm up the model clients
    single = await _timed_runs(server, 3, concurrent=False) / 3
    wall = await _timed_runs(server, N_CONCURRENT, concurrent=True)
    print(f"\none run {single:.2f}s; {N_CONCURRENT} concurrent {wall:.2f}s")
    assert len(fake_llm.log()) == (1 + 3 + N_CONCURRENT) * (len(BRANCHES) + 1)
    assert wall < 0.5 * N_CONCURRENT * single


@pytest.mark.parametrize("value", [0, -1, "4", True])
def test_a_bad_max_concurrency_is_a_clear_run_error(
    server: Server, fake_llm: FakeLLM, value: Any
) -> None:
    config = {"max_concurrency": value}
    body = {"assistant_id": "evaluation", "input": {"text": "Hi"}, "config": config}
    response = httpx.post(f"{server.url}/runs/wait", json=body, timeout=60, trust_env=False)

    error = response.json()["__error__"]
    assert error["error"] == "ConfigurationError", error
    assert (
        f"config.max_concurrency must be a whole number >= 1 (or absent), got {value!r}"
        in (error["message"])
    )
    assert fake_llm.log() == []


def test_a_bad_model_setting_is_a_configuration_error_never_retried(
    server: Server, fake_llm: FakeLLM
) -> None:
    body = {
        "assistant_id": "research",
        "input": {"topic": "Bees"},
        "context": {"writer_model": "nonexistentprovider:foo"},
    }
    response = httpx.post(f"{server.url}/runs/wait", json=body, timeout=60, trust_env=False)

    error = response.json()["__error__"]
    assert error["error"] == "ConfigurationError", error
    assert "writer model 'nonexistentprovider:foo'" in error["message"]
    assert fake_llm.log() == []  # found before the planner's call


def test_a_thread_deleted_and_created_again_keeps_only_the_new_run(
    client: SyncLangGraphClient, fake_llm: FakeLLM
) -> None:
    # Deletes finish in the background (langgraph_fanout/persistence/deferred_deletes.py): the same
    # thread id, created again at once, must neither see the old run's checkpoints nor lose its own.
    for attempt in range(5):
        thread_id = f"00000000-0000-4000-8000-{attempt:012d}"
        client.threads.create(thread_id=thread_id)
        client.runs.wait(thread_id, "research", input={"topic": "Old topic"})
        client.threads.delete(thread_id)
        client.threads.create(thread_id=thread_id)
        output = client.runs.wait(thread_id, "research", input={"topic": "New topic"})

        check_output("research", output)
        time.sleep(0.2)  # any background delete is long done
        state = client.threads.get_state(thread_id)
        assert state["values"]["topic"] == "New topic"
        history = client.threads.get_history(thread_id, limit=100)
        inputs = [h for h in history if h["metadata"].get("source") == "input"]
        assert len(inputs) == 1, [h["values"].get("topic") for h in history]
        assert all(h["values"].get("topic") in (None, "New topic") for h in history)


BAD_DATABASES = {
    "unmatched-bracket": (
        "postgresql://fanout:SECRET@[::1/runs",
        "the database URL in $FANOUT_DB (postgresql://***, not shown: it may hold a password) "
        "does not parse: its host part has an unmatched",
    ),
    "unreachable": (
        "postgresql://fanout:SECRET@127.0.0.1:1/runs",
        "cannot open postgresql://fanout:***@127.0.0.1:1/runs: connection failed",
    ),
}


@pytest.mark.parametrize("reload", [False, True], ids=["no-reload", "reload"])
@pytest.mark.parametrize("database", BAD_DATABASES)
def test_a_bad_database_stops_the_server_with_one_line(
    fake_llm: FakeLLM, tmp_path: Path, database: str, reload: bool
) -> None:
    env = server_env(fake_llm, tmp_path / "unused.sqlite")
    env["FANOUT_DB"], reason = BAD_DATABASES[database]
    command = dev_command(tmp_path, free_port())
    if reload:  # langgraph dev as users start it: its reloader runs the server in a child
        command.remove("--no-reload")

    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=START_TIMEOUT
    )

    log = done.stdout + done.stderr
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and reason in errors[0], log
    assert "Traceback" not in log and "SECRET" not in log
    # Without the reloader the server exits 2; the reloader, told to stop, exits as after a
    # Ctrl-C (it has no way to say that its server failed).
    assert done.returncode == (0 if reload else 2), log


def test_dotenv_overrides_the_environment(fake_llm: FakeLLM, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FANOUT_MODEL=openai:model-from-dotenv\n")
    server = start_server(tmp_path, server_env(fake_llm, tmp_path / "checkpoints.sqlite"))
    try:
        output = server.sync_client().runs.wait(None, "evaluation", input=INPUTS["evaluation"])
    finally:
        server.kill()
    assert isinstance(output, dict)
    assert {r["model"] for r in fake_llm.log()} == {"model-from-dotenv"}


# --- the documented examples -------------------------------------------------------------------


def server_doc_blocks(language: str) -> list[str]:
    """The fenced blocks of ``language`` in docs/server.md."""
    return blocks((DOCS / "server.md").read_text(), language)


def run_docs_curl_examples(url: str) -> None:
    """Run the curl blocks of docs/server.md against the server at ``url``."""
    curl = server_doc_blocks("bash")
    assert len(curl) >= 3
    for block in curl:
        assert DOCUMENTED_URL in block
        script = block.replace(DOCUMENTED_URL, url)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{block}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert '"report"' in done.stdout and '"task_count"' in done.stdout, done.stdout


def run_docs_sdk_example(url: str) -> None:
    """Run the Python SDK block of docs/server.md against the server at ``url``."""
    (block,) = server_doc_blocks("python")
    assert DOCUMENTED_URL in block
    done = subprocess.run(
        [sys.executable, "-c", block.replace(DOCUMENTED_URL, url)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "task_count" in done.stdout


def test_docs_curl_examples_run(server: Server, fake_llm: FakeLLM) -> None:
    run_docs_curl_examples(server.url)


def test_docs_python_example_runs(server: Server, fake_llm: FakeLLM) -> None:
    run_docs_sdk_example(server.url)


# --- persistence across a hard kill ------------------------------------------------------------
#
# What survives `kill -9` (measured with langgraph-api 0.16.7, langgraph-runtime-inmem 0.36.7):
# - Checkpoints: every step and every finished worker is in $FANOUT_DB at once, through the
#   "checkpointer" entry of langgraph.json (langgraph_fanout/server/checkpointer.py). Without it
#   they die with the process.
# - The runtime's own records (threads, runs) are pickled to .langgraph_api/ by a flush loop every
#   10 s. KNOWN LIMIT: a thread created less than ~10 s before the kill is unknown to the new
#   server (404) until it is registered again under its id; then its state is all there.
#   A run in flight whose record was flushed is run again by the restarted server (only its
#   unfinished workers); one whose record was not is not restarted: a run with no input
#   resumes the thread, and again only the unfinished workers run.

FLUSH_TIMEOUT = 15.0  # the runtime flushes its records every 10 s


def _wait_for_flush(server: Server, after: float) -> None:
    """Wait until the runtime has pickled its records to disk after ``after`` (epoch seconds)."""
    ops = server.workdir / ".langgraph_api" / ".langgraph_ops.pckl"
    deadline = time.monotonic() + FLUSH_TIMEOUT
    while not (ops.exists() and ops.stat().st_mtime > after):
        assert time.monotonic() < deadline, f"{ops} not written within {FLUSH_TIMEOUT:g}s"
        time.sleep(0.2)
    time.sleep(0.5)  # let the write finish


def _start_run_cut_mid_fan_out(client: SyncLangGraphClient, fake: FakeLLM) -> str:
    """Start a research run on a new thread; return once question 1 is answered and
    questions 2 and 3 hang at the fake LLM. Returns the thread id."""
    topic = "Tidal power"
    fake.add_rules(
        *({"match": f"Fake questions {i} for: Topic: {topic}", "fault": "hang"} for i in (2, 3))
    )
    thread_id: str = client.threads.create()["thread_id"]
    client.runs.create(thread_id, "research", input={"topic": topic})
    deadline = time.monotonic() + 30
    while not any(
        r["t_end"] and f"Fake questions 1 for: Topic: {topic}" in r["last_user"] for r in fake.log()
    ):
        assert time.monotonic() < deadline, "the first researcher never finished"
        time.sleep(0.05)
    return thread_id


def test_state_survives_kill_9(fake_llm: FakeLLM, tmp_path: Path) -> None:
    env = server_env(fake_llm, tmp_path / "checkpoints.sqlite")
    first = start_server(tmp_path, env)
    try:
        client = first.sync_client()
        flushed = client.threads.create()["thread_id"]
        flushed_output = client.runs.wait(flushed, "research", input=INPUTS["research"])
        _wait_for_flush(first, after=time.time())

        recent = client.threads.create()["thread_id"]
        recent_output = client.runs.wait(recent, "research", input=INPUTS["research"])

        # A run killed mid-fan-out: question 1 answered, questions 2 and 3 hanging.
        interrupted = _start_run_cut_mid_fan_out(client, fake_llm)
        time.sleep(0.5)  # the first researcher's write reaches the database
    finally:
        first.kill(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL

    fake_llm.reset()
    second = start_server(tmp_path, env)
    try:
        client = second.sync_client()
        # Flushed before the kill: the thread and its state are simply there.
        state = client.threads.get_state(flushed)
        assert state["next"] == []
        assert isinstance(flushed_output, dict)
        assert {k: state["values"][k] for k in flushed_output} == flushed_output

        # KNOWN LIMIT: created within the last flush interval, the thread record is gone ...
        with pytest.raises(NotFoundError):
            client.threads.get_state(recent)
        # ... but its checkpoints are in the database: register the id again and read them.
        for thread_id in (recent, interrupted):
            client.threads.create(
                thread_id=thread_id, if_exists="do_nothing", metadata={"graph_id": "research"}
            )
        state = client.threads.get_state(recent)
        assert state["next"] == []
        assert isinstance(recent_output, dict)
        assert {k: state["values"][k] for k in recent_output} == recent_output
        assert len(client.threads.get_history(recent)) >= 4

        # The interrupted run is not restarted; resuming the thread runs only the unfinished work.
        state = client.threads.get_state(interrupted)
        assert state["next"] == ["research_question", "research_question"]
        assert fake_llm.log() == []
        output = client.runs.wait(interrupted, "research", input=None)
        assert isinstance(output, dict)
        assert output["task_count"] == 3
        assert [r["last_user"].rsplit("Fake questions ", 1)[-1][0] for r in fake_llm.log()[:2]] in (
            ["2", "3"],
            ["3", "2"],
        )
        assert len(fake_llm.log()) == 3  # two researchers and the writer
    finally:
        second.kill()


def test_a_run_cut_short_by_a_crash_is_run_again_by_the_restarted_server(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    env = server_env(fake_llm, tmp_path / "checkpoints.sqlite")
    first = start_server(tmp_path, env)
    try:
        thread = _start_run_cut_mid_fan_out(first.sync_client(), fake_llm)
        _wait_for_flush(first, after=time.time())  # the running run is on disk
    finally:
        first.kill(signal.SIGKILL)

    fake_llm.reset()  # no more hangs
    second = start_server(tmp_path, env)
    try:
        client = second.sync_client()
        deadline = time.monotonic() + 60
        while client.threads.get_state(thread)["next"]:
            assert time.monotonic() < deadline, f"not run again:\n{second.output()[-3000:]}"
            time.sleep(0.2)
        state = client.threads.get_state(thread)
        assert state["values"]["task_count"] == 3
        log = fake_llm.log()
        researchers = [r["last_user"] for r in log if r["last_user"].startswith("Research")]
        assert len(log) == 3  # the two unfinished researchers and the writer only
        assert sorted(q.split("Fake questions ")[1][0] for q in researchers) == ["2", "3"]
    finally:
        second.kill()
