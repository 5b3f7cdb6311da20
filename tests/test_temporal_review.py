"""Plan review on Temporal runs, through the same doors as in-process runs.

``--review`` at a terminal, ``--plan FILE``, ``fanout resume``, and ``run_graph`` with
``Context(review_plan=True)`` then ``Command(resume=...)`` from Python; the paused run waits
in Temporal's history, across kills of its worker and of the server.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.temporal_cluster import temporal_binary

temporal_binary()  # skips the module (fails under CI) without the [temporal] extra

from langgraph.types import Command  # noqa: E402
from temporalio.client import Client  # noqa: E402

from langgraph_fanout.temporal.client import connect, run_graph  # noqa: E402
from langgraph_fanout.temporal.worker import serving  # noqa: E402
from state.context import Context  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.fanout_cli import fanout, json_result  # noqa: E402
from tests.temporal_cluster import DevServer, kill, start_worker, wait_until_ready  # noqa: E402
from tests.test_cli_review import PROMPT, calls, finish, spawn  # noqa: E402
from tests.test_durability import research_calls  # noqa: E402

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(180)]

CONTEXT = Context(model="openai:fake-model", review_plan=True)
EDITED = {"sections": [{"name": "Neap tides", "description": "Weak ones."}]}


def output_of(result: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in result.items() if k not in ("thread_id", "usage")}


@pytest.mark.parametrize(
    ("decision", "code"),
    [(EDITED, 0), ({"approve": True}, 0), ({"reject": True, "reason": "off topic"}, 3)],
    ids=["edited", "approved", "rejected"],
)
def test_plan_file_decides_a_temporal_run_as_it_does_a_local_one(
    fake_llm: FakeLLM,
    address: str,
    task_queue: str,
    tmp_path: Path,
    decision: dict[str, object],
    code: int,
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(decision))
    local = fanout(fake_llm, tmp_path, "article", "Tides", "--plan", str(plan), "--json")
    local_calls = calls(fake_llm.log())
    fake_llm.reset()
    worker = start_worker(fake_llm, tmp_path, address, task_queue, "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        remote = fanout(
            fake_llm, tmp_path, "article", "Tides", "--plan", str(plan), "--json",
            "--temporal", address, "--task-queue", task_queue,
        )  # fmt: skip
    finally:
        kill(worker)

    assert local.returncode == remote.returncode == code, remote.stderr
    assert output_of(json.loads(remote.stdout)) == output_of(json.loads(local.stdout))
    assert calls(fake_llm.log()) == local_calls
    assert "review_sections: paused" in remote.stderr and "review_sections: done" in remote.stderr


def test_review_at_the_terminal_on_temporal(
    fake_llm: FakeLLM, address: str, task_queue: str, tmp_path: Path
) -> None:
    worker = start_worker(fake_llm, tmp_path, address, task_queue, "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        child = spawn(
            fake_llm, tmp_path, "article", "Tides", "--review",
            "--temporal", address, "--task-queue", task_queue,
        )  # fmt: skip
        child.expect(PROMPT)
        assert calls(fake_llm.log())["sections"] == []  # paused before any writer
        child.sendline("run")
        code = finish(child)
    finally:
        kill(worker)

    assert code == 0
    assert len(calls(fake_llm.log())["sections"]) == 3


async def test_python_review_with_an_invalid_then_a_valid_decision(
    fake_llm: FakeLLM, client: Client, task_queue: str
) -> None:
    run_id = f"review-{uuid.uuid4().hex[:8]}"
    async with serving(client, task_queue):
        paused = await run_graph(
            client, "research", {"topic": "tides"}, CONTEXT, run_id=run_id, task_queue=task_queue
        )
        plan = paused["__interrupt__"][0].value
        refused = await run_graph(
            client, "research", Command(resume={"questions": ["only one"]}), run_id=run_id
        )
        done = await run_graph(
            client,
            "research",
            Command(resume={"questions": plan["questions"][:2]}),
            run_id=run_id,
            task_queue=task_queue,
        )

    assert plan == {"questions": [f"Fake questions {n} for: Topic: tides" for n in (1, 2, 3)]}
    (pause,) = refused["__interrupt__"]
    assert pause.value["questions"] == plan["questions"]
    assert "questions: List should have at least 2 items" in pause.value["error"]
    assert done["task_count"] == 2 and done["review"] == {"decision": "edited", "reason": ""}
    assert research_calls(fake_llm.log()) == {"plan": 1, "q1": 1, "q2": 1, "writer": 1}


async def test_a_paused_run_survives_worker_and_server_restarts(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    server = DevServer(tmp_path)
    server.start()
    run_id = f"paused-{uuid.uuid4().hex[:8]}"
    worker = start_worker(fake_llm, tmp_path, server.address, "q", "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        client = await connect(server.address, db=str(tmp_path / "payloads.sqlite"))
        paused = await run_graph(
            client, "research", {"topic": "tides"}, CONTEXT, run_id=run_id, task_queue="q"
        )
        assert "__interrupt__" in paused
        listed = fanout(fake_llm, tmp_path, "runs", "--json", "--temporal", server.address)
        kill(worker)
        server.kill()
        server.start()
        worker = start_worker(fake_llm, tmp_path, server.address, "q", "w2")
        wait_until_ready(tmp_path, "w2", worker)
        approve = tmp_path / "approve.yaml"
        approve.write_text("approve: true\n")
        resumed = fanout(
            fake_llm, tmp_path, "resume", run_id, "--plan", str(approve), "--json",
            "--temporal", server.address, "--task-queue", "q",
        )  # fmt: skip
    finally:
        kill(worker)
        server.kill()

    assert [r["status"] for r in json.loads(listed.stdout) if r["thread_id"] == run_id] == [
        "paused"
    ]
    output = json_result(resumed)
    assert output["task_count"] == 3 and output["review"]["decision"] == "approved"
    assert research_calls(fake_llm.log()) == {
        "plan": 1,
        "q1": 1,
        "q2": 1,
        "q3": 1,
        "writer": 1,
    }
    assert "started research.plan_research" not in (tmp_path / "w2.err").read_text()
