"""LangSmith tracing through the real ``langsmith`` client, and the CLI's usage summary.

A small HTTP receiver on 127.0.0.1 stands in for the LangSmith API (``LANGSMITH_ENDPOINT``):
it answers ``/info`` like the real service (multipart ingest, zstd compression on), takes
whatever the client posts (``/runs/multipart``, ``/runs/batch``, ``/runs``), and keeps every
raw request so the test can decode the runs and search every byte for secrets.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.fake_llm import FakeLLM

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LANGSMITH_KEY = "lsv2_pt_fanout-test-secret-7c1d9e2a"
OPENAI_KEY = "sk-fanout-test-openai-secret-5b8f3a61"
TRACED_MODEL = "openai:fake-traced-model"  # its own model-cache entry, built with OPENAI_KEY
INFO = {
    "version": "0.12.0",
    "license_expiration_time": None,
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
    "instance_flags": {"zstd_compression_enabled": True},
}


# --- the receiver -----------------------------------------------------------------------------


@dataclass
class Received:
    """One HTTP request as it arrived, and its body decoded."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: bytes  # after Content-Encoding


@dataclass
class Receiver:
    """What the fake LangSmith API got."""

    url: str
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run posted, by id, with later patches merged in."""
        runs: dict[str, dict[str, Any]] = {}
        with self.lock:
            requests = list(self.requests)
        for req in requests:
            for op, run in _operations(req):
                merged = runs.setdefault(str(run["id"]), {})
                if op == "patch":  # a patch must not erase what the post said
                    run = {k: v for k, v in run.items() if v is not None}
                extra = {**merged.get("extra", {}), **(run.get("extra") or {})}
                merged.update(run)
                if extra:
                    merged["extra"] = extra
        return runs


def _decode(headers: dict[str, str], raw: bytes) -> bytes:
    encoding = headers.get("content-encoding", "").lower()
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw).read()
    if encoding == "gzip":
        return gzip.decompress(raw)
    return raw


def _operations(req: Received) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(post|patch, run)`` pairs of one ingest request."""
    if req.path.startswith("/runs/multipart"):
        yield from _multipart_operations(req)
    elif req.path.startswith("/runs/batch"):
        batch = json.loads(req.body)
        for op in ("post", "patch"):
            for run in batch.get(op) or []:
                yield op, run
    elif req.path.startswith("/runs"):
        run = json.loads(req.body)
        if req.method == "PATCH":
            run.setdefault("id", req.path.rstrip("/").rsplit("/", 1)[-1])
        yield ("post" if req.method == "POST" else "patch"), run


def _multipart_operations(req: Received) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parts are named ``post.<id>``, ``post.<id>.inputs``, ``patch.<id>.outputs``, ..."""
    head = f"Content-Type: {req.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + req.body)
    assert message.is_multipart(), req.headers["content-type"]
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        op, run_id, *rest = str(name).split(".")
        if op not in ("post", "patch") or (rest and rest[0] == "attachment"):
            continue
        payload = json.loads(part.get_payload(decode=True) or b"null")
        run = runs.setdefault((op, run_id), {"id": run_id})
        if rest:  # a field sent as its own part: inputs, outputs, events, extra...
            run[rest[0]] = payload
        else:
            run.update(payload)
    for (op, _), run in runs.items():
        yield op, run


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _receive(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        received = Received(self.command, self.path, headers, raw, _decode(headers, raw))
        with self.receiver.lock:
            self.receiver.requests.append(received)
        if self.command == "GET" and self.path.startswith("/info"):
            self._reply(200, INFO)
        elif self.command == "GET":
            self._reply(404, {"detail": "not found"})
        else:
            self._reply(202, {})

    do_GET = do_POST = do_PATCH = do_PUT = _receive

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def langsmith_receiver() -> Iterator[Receiver]:
    """The fake LangSmith API, serving from a thread."""
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    handler.receiver = receiver
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def _reset_langsmith() -> None:
    """Forget cached env settings and the cached client (both are read once per process)."""
    import langsmith.run_trees as run_trees
    import langsmith.utils as ls_utils

    ls_utils.get_env_var.cache_clear()
    run_trees._CLIENT = None


@pytest.fixture
def tracing(fake_llm: FakeLLM, langsmith_receiver: Receiver) -> Iterator[Receiver]:
    """Tracing on, to the receiver, with distinctive secrets; off again afterwards."""
    from langchain_core.tracers.langchain import wait_for_all_tracers

    with pytest.MonkeyPatch.context() as env:
        env.setenv("LANGSMITH_TRACING", "true")
        env.setenv("LANGSMITH_ENDPOINT", langsmith_receiver.url)
        env.setenv("LANGSMITH_API_KEY", LANGSMITH_KEY)
        env.setenv("LANGSMITH_PROJECT", "test")
        env.setenv("OPENAI_API_KEY", OPENAI_KEY)
        env.setenv("FANOUT_MODEL", TRACED_MODEL)
        for name in ("LANGCHAIN_API_KEY", "LANGCHAIN_ENDPOINT", "LANGSMITH_WORKSPACE_ID"):
            env.delenv(name, raising=False)
        _reset_langsmith()
        try:
            yield langsmith_receiver
        finally:
            wait_for_all_tracers()
    _reset_langsmith()  # the env is restored: later tests must not trace
    import langsmith.utils as ls_utils

    assert not ls_utils.tracing_is_enabled()


# --- the tests --------------------------------------------------------------------------------


def _metadata(run: dict[str, Any]) -> dict[str, Any]:
    return (run.get("extra") or {}).get("metadata") or {}


def _children(runs: dict[str, dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(
        (r for r in runs.values() if str(r.get("parent_run_id")) == str(parent["id"])),
        key=lambda r: r["dotted_order"],
    )


def _llm_runs(runs: dict[str, dict[str, Any]], node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every LLM run somewhere under ``node``."""
    found, stack = [], [node]
    while stack:
        for child in _children(runs, stack.pop()):
            (found if child["run_type"] == "llm" else stack).append(child)
    return found


ROUTERS = ("assign_sections", "after_spending_check")
"""Routers traced beside the nodes (in-process)."""


def check_article_trace(
    runs: dict[str, dict[str, Any]], root: dict[str, Any], written: dict[str, Any]
) -> None:
    """The trace of an article run: planner, one writer per planned section (each with its
    LLM run, labelled), budget check, synthesizer."""
    nodes = [r for r in _children(runs, root) if r["name"] not in ROUTERS]
    assert [n["name"] for n in nodes] == [
        "plan_sections",
        *["write_section"] * (len(nodes) - 3),
        "check_spending",
        "synthesize_article",
    ]
    writers = []  # a batch's node run (Temporal) holds a run per task
    for node in nodes[1:-2]:
        tasks = [r for r in _children(runs, node) if r["name"] == "write_section"]
        writers.extend(tasks or [node])
    planned = [s["name"] for s in written["sections"]]
    assert len(writers) == len(planned)
    labels = []
    for writer in writers:
        (llm,) = _llm_runs(runs, writer)
        metadata = _metadata(llm)
        labels.append(metadata["section"])
        assert metadata["langgraph_node"] == "write_section"
        assert metadata["fanout_role"] == "worker"
        assert metadata["fanout_model"] == TRACED_MODEL
        assert metadata["ls_model_name"] == TRACED_MODEL.partition(":")[2]
    assert sorted(labels) == sorted(planned) and len(set(planned)) == len(planned)
    (planner_llm,) = _llm_runs(runs, nodes[0])
    assert _metadata(planner_llm)["fanout_role"] == "planner"
    assert _metadata(planner_llm)["fanout_model"] == TRACED_MODEL


async def test_one_trace_per_run_with_named_nodes_worker_labels_thread_and_model(
    tracing: Receiver, fake_llm: FakeLLM
) -> None:
    from langchain_core.tracers.langchain import wait_for_all_tracers

    from graphs import article, evaluation

    fake_llm.configure(default_items=3)
    article_thread, evaluation_thread = f"article-{uuid.uuid4()}", f"evaluation-{uuid.uuid4()}"
    written = await article.graph.ainvoke(
        {"topic": "Tides"}, {"configurable": {"thread_id": article_thread}}
    )
    await evaluation.graph.ainvoke(
        {"text": "Tides rise twice a day."}, {"configurable": {"thread_id": evaluation_thread}}
    )
    wait_for_all_tracers()

    runs = tracing.runs()
    roots = {r["name"]: r for r in runs.values() if r.get("parent_run_id") is None}
    assert sorted(roots) == ["article", "evaluation"]  # one trace per graph run
    assert {r.get("session_name") for r in roots.values()} == {"test"}  # LANGSMITH_PROJECT
    assert all(r.get("end_time") and not r.get("error") for r in runs.values())
    threads = {"article": article_thread, "evaluation": evaluation_thread}
    for name, root in roots.items():
        trace = [r for r in runs.values() if str(r["trace_id"]) == str(root["id"])]
        assert all(_metadata(r).get("thread_id") == threads[name] for r in trace), name
    assert len(runs) == sum(
        str(r["trace_id"]) in {str(root["id"]) for root in roots.values()} for r in runs.values()
    )

    assert len(written["sections"]) == 3
    check_article_trace(runs, roots["article"], written)

    # evaluation: three branches, then the aggregator
    nodes = [r for r in _children(runs, roots["evaluation"]) if r["name"] not in ROUTERS]
    assert sorted(n["name"] for n in nodes[:3]) == [
        "evaluate_audience_fit",
        "evaluate_safety",
        "evaluate_tone",
    ]
    assert [n["name"] for n in nodes[3:]] == ["check_spending", "aggregate"]
    criteria = []
    for node in nodes[:3] + nodes[4:]:  # the budget check calls no model
        (llm,) = _llm_runs(runs, node)
        assert _metadata(llm)["fanout_model"] == TRACED_MODEL
        criteria.append(_metadata(llm).get("criterion"))
    assert sorted(filter(None, criteria)) == ["audience_fit", "safety", "tone"]


@pytest.mark.temporal
@pytest.mark.parametrize("sections", [3, 60], ids=["an-activity-per-section", "batched"])
async def test_a_temporal_run_is_one_trace_as_in_process(
    tracing: Receiver, fake_llm: FakeLLM, client: Any, task_queue: str, sections: int
) -> None:
    """Temporal's LangSmith plugin puts the activities' LLM runs under the workflow's node
    runs; 60 sections are 30 batches of 2, each task a writer run of its own."""
    from langchain_core.tracers.langchain import wait_for_all_tracers

    from langgraph_fanout.temporal.worker import serving
    from langgraph_fanout.temporal.workflows import RunRequest

    fake_llm.configure(default_items=sections)
    thread = f"article-{uuid.uuid4()}"
    request = RunRequest({"topic": "Tides"}, {"model": TRACED_MODEL, "max_sections": sections})
    async with serving(client, task_queue):
        written = await client.execute_workflow(
            "article", request, id=thread, task_queue=task_queue, result_type=dict
        )
    wait_for_all_tracers()

    runs = tracing.runs()
    roots = [r for r in runs.values() if r.get("parent_run_id") is None]
    assert [r["name"] for r in roots] == ["article"]  # one trace
    assert {str(r["trace_id"]) for r in runs.values()} == {str(roots[0]["id"])}
    assert all(r.get("end_time") and not r.get("error") for r in runs.values())
    assert len(written["sections"]) == sections
    check_article_trace(runs, roots[0], written)
    llm_runs = [r for r in runs.values() if r["run_type"] == "llm"]
    assert len(llm_runs) == sections + 1  # the planner and the writers, none traced twice
    assert all(_metadata(r).get("thread_id") == thread for r in llm_runs)


@pytest.mark.temporal
def test_a_tracing_worker_without_the_plugin_says_what_to_install(
    tracing: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langgraph_fanout.temporal.worker import tracing_plugins

    assert [type(p).__name__ for p in tracing_plugins()] == ["LangSmithPlugin"]
    monkeypatch.setitem(sys.modules, "temporalio.langsmith", None)  # not installed

    with pytest.raises(ImportError, match="pip install --no-deps temporalio-langsmith=="):
        tracing_plugins()


async def test_no_secret_in_any_payload(tracing: Receiver, fake_llm: FakeLLM) -> None:
    from langchain_core.tracers.langchain import wait_for_all_tracers

    from graphs import article

    await article.graph.ainvoke({"topic": "Tides"}, {"configurable": {"thread_id": "secrets"}})
    wait_for_all_tracers()

    posts = [r for r in tracing.requests if r.method != "GET"]
    assert posts and tracing.runs()
    for req in tracing.requests:
        assert req.headers.get("x-api-key") == LANGSMITH_KEY  # where the key belongs
        other_headers = " ".join(f"{k}: {v}" for k, v in req.headers.items() if k != "x-api-key")
        for secret in (LANGSMITH_KEY, OPENAI_KEY):
            assert secret not in other_headers
            assert secret.encode() not in req.raw
            assert secret.encode() not in req.body
            assert secret not in req.path


@pytest.mark.cli
def test_cli_json_reports_summed_usage(fake_llm: FakeLLM, tmp_path: Path) -> None:
    sections = 5
    fake_llm.configure(default_items=sections)
    env = {**os.environ, "FANOUT_DB": str(tmp_path / "runs.sqlite"), "NO_COLOR": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "langgraph_fanout.cli",
            "article",
            "Tides",
            "--json",
            "--max-sections",
            "8",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    usage = json.loads(result.stdout)["usage"]
    assert usage["llm_calls"] == 1 + sections  # the planner and one writer per section
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert f"done: {1 + sections} LLM calls" in result.stderr
    requests = fake_llm.log()
    assert len(requests) == 1 + sections
