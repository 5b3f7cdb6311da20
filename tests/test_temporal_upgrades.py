"""Upgrading workers while runs are in flight: every run finishes on the code that started it.

The second release is a copy of the project's packages with one change, served by a real
``fanout worker`` process started from that copy: a changed step inside the workflow, or an
LLM node added before the planner. Worker Versioning pins each run to the version (a digest
of the code) that started it; a new version becomes current as its first worker starts.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.temporal_cluster import temporal_binary

temporal_binary()  # skips the module (fails under CI) without the [temporal] extra

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402

from graphs import article  # noqa: E402
from langgraph_fanout.temporal.client import run_graph  # noqa: E402
from langgraph_fanout.temporal.moves import MOVED_FROM  # noqa: E402
from langgraph_fanout.temporal.versioning import build_id  # noqa: E402
from langgraph_fanout.temporal.watch import RunStuckError  # noqa: E402
from langgraph_fanout.temporal.worker import serving  # noqa: E402
from state.context import Context  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.fanout_cli import FANOUT, fanout, fanout_env, json_result  # noqa: E402
from tests.temporal_cluster import attempts, kill, wait_for, wait_until_ready  # noqa: E402
from tests.test_durability import article_calls, wait_for_in_flight  # noqa: E402

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("graphs", "langgraph_fanout", "nodes", "state")
CONTEXT = Context(model="openai:fake-model", max_sections=3)
SLOW_WRITERS = {"match": "Article topic: tides", "latency": 4.0}

CHANGED_STEP = {
    "nodes/article.py": [
        ("parts = [f\"# {state['topic']}\"]", "parts = [f\"# {state['topic']} (release 2)\"]")
    ]
}
"""Release 2 titles the article differently: a step that runs inside the workflow."""

ADDED_LLM_NODE = {
    "nodes/article.py": [
        (
            "async def plan_sections(",
            "async def brief_topic(state: ArticleState, runtime: Runtime[Context]) -> dict:\n"
            '    """Release 2: one more LLM call before the plan."""\n'
            "    context = Context.of(runtime.context)\n"
            '    await call_model(context, "planner", messages("Brief", "Brief: " + '
            'state["topic"]))\n'
            "    return {}\n\n\n"
            "async def plan_sections(",
        )
    ],
    "graphs/article.py": [
        ("from nodes.article import (", "from nodes.article import (\n    brief_topic,"),
        (
            '    builder.add_edge(START, "plan_sections")',
            "    placement.add_llm_node(builder, brief_topic)\n"
            '    builder.add_edge(START, "brief_topic")\n'
            '    builder.add_edge("brief_topic", "plan_sections")',
        ),
    ],
}
"""Release 2 asks the model once more, before planning: an activity the history of a run
started by release 1 does not have."""


RENAMED = ("write_section", "write_part")
"""Release 1 of the move tests calls the section writer ``write_part``; this code renamed it."""


def renamed_release(folder: Path) -> Path:
    """A copy of the project's packages whose section-writer node has release 1's name."""
    release(folder, {})
    for name in ("graphs/article.py", "nodes/article.py", "langgraph_fanout/workflows.py"):
        path = folder / name
        path.write_text(path.read_text().replace(*RENAMED))
    return folder


def release(folder: Path, patches: dict[str, list[tuple[str, str]]]) -> Path:
    """A copy of the project's packages with ``patches`` (file -> [(old, new)]) applied."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name, changes in patches.items():
        path = folder / name
        text = path.read_text()
        for old, new in changes:
            assert text.count(old) == 1, f"{old!r} is not in {name} once: update the test"
            text = text.replace(old, new)
        path.write_text(text)
    return folder


def start_worker(
    fake: FakeLLM, cwd: Path, address: str, task_queue: str, name: str, *extra: str,
    code: Path = REPO,
) -> subprocess.Popen[str]:  # fmt: skip
    """``fanout worker`` of the code in ``code``; its stderr in ``cwd/<name>.err``."""
    with (cwd / f"{name}.err").open("w") as err:
        return subprocess.Popen(
            [*FANOUT, "worker", "--temporal", address, "--task-queue", task_queue, *extra],
            cwd=code,
            env=fanout_env(fake),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


async def identities(client: Client, run_id: str) -> set[str]:
    """Every worker that ran a workflow task or an activity of the run."""
    handle = client.get_workflow_handle(run_id)
    found = set()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            found.add(event.workflow_task_started_event_attributes.identity)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            found.add(event.activity_task_started_event_attributes.identity)
    return found


def ready_line(cwd: Path, name: str) -> str:
    return next(line for line in (cwd / f"{name}.err").read_text().splitlines() if "ready" in line)


def submit(fake: FakeLLM, cwd: Path, address: str, task_queue: str, run_id: str):
    command = [
        *FANOUT, "article", "tides", "--max-sections", "3", "--json", "--thread", run_id,
        "--temporal", address, "--task-queue", task_queue,
    ]  # fmt: skip
    with (cwd / f"{run_id}.out").open("w") as out, (cwd / f"{run_id}.err").open("w") as err:
        return subprocess.Popen(command, cwd=cwd, env=fanout_env(fake), stdout=out, stderr=err)


def finished(process: subprocess.Popen[Any], cwd: Path, run_id: str) -> dict[str, Any]:
    code = process.wait(timeout=120)
    out, err = (cwd / f"{run_id}.out").read_text(), (cwd / f"{run_id}.err").read_text()
    return json_result(subprocess.CompletedProcess(process.args, code, out, err))


@pytest.mark.parametrize(
    ("patches", "release_2_calls", "title"),
    [(CHANGED_STEP, 4, "# tides (release 2)\n"), (ADDED_LLM_NODE, 5, "# tides\n")],
    ids=["changed-step-in-the-workflow", "added-llm-node"],
)
async def test_in_flight_run_finishes_on_its_version_while_new_runs_use_the_new_one(
    fake_llm: FakeLLM,
    client: Client,
    address: str,
    task_queue: str,
    tmp_path: Path,
    patches: dict[str, list[tuple[str, str]]],
    release_2_calls: int,
    title: str,
) -> None:
    expected = await article.graph.ainvoke({"topic": "tides"}, context=CONTEXT)
    fake_llm.reset()
    fake_llm.add_rules(SLOW_WRITERS)
    code_2 = release(tmp_path / "release-2", patches)
    old = start_worker(fake_llm, tmp_path, address, task_queue, "v1")
    new = None
    try:
        wait_until_ready(tmp_path, "v1", old)
        r1, r2 = f"r1-{task_queue}", f"r2-{task_queue}"  # run ids are unique per server
        in_flight = submit(fake_llm, tmp_path, address, task_queue, r1)
        wait_for_in_flight(fake_llm, 3)  # release 1's writers are running
        new = start_worker(fake_llm, tmp_path, address, task_queue, "v2", code=code_2)
        wait_until_ready(tmp_path, "v2", new)
        fake_llm.reset()  # count release 2's calls only
        after = submit(fake_llm, tmp_path, address, task_queue, r2)
        first, second = finished(in_flight, tmp_path, r1), finished(after, tmp_path, r2)
        release_2_log = fake_llm.log()
    finally:
        for worker in (old, *([new] if new else [])):
            kill(worker)

    v1, v2 = ready_line(tmp_path, "v1"), ready_line(tmp_path, "v2")
    assert "made current" in v1 and "made current" in v2
    assert v1.split("version ")[1][:12] != v2.split("version ")[1][:12]  # another digest
    # The run in flight: release 1's output, every task on release 1's worker.
    assert {k: v for k, v in first.items() if k not in ("thread_id", "usage")} == expected
    # 4 calls; one more per activity retried (a heartbeat missed on a loaded machine: CI saw 5)
    assert first["usage"]["llm_calls"] == (await attempts(client, r1))[1] >= 4
    assert await identities(client, r1) == {f"{old.pid}@{socket.gethostname()}"}
    # The run started after release 2 came: release 2's code, on release 2's worker.
    assert await identities(client, r2) == {f"{new.pid}@{socket.gethostname()}"}
    assert second["article"].startswith(title)
    assert second["usage"]["llm_calls"] == len(release_2_log) == release_2_calls


async def test_a_run_whose_version_has_no_worker_names_the_code_it_waits_for(
    fake_llm: FakeLLM, address: str, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules(SLOW_WRITERS)
    run_id = f"gone-{task_queue}"
    old = start_worker(fake_llm, tmp_path, address, task_queue, "old", "--build-id", "release-1")
    back = None
    try:
        wait_until_ready(tmp_path, "old", old)
        run = submit(fake_llm, tmp_path, address, task_queue, run_id)
        wait_for_in_flight(fake_llm, 3)
        kill(old)  # release 1's only worker is gone, its writers with it
        err = tmp_path / f"{run_id}.err"
        await wait_for("the waiting note", lambda: "waiting for a worker" in err.read_text())
        back = start_worker(
            fake_llm, tmp_path, address, task_queue, "back", "--build-id", "release-1"
        )
        output = finished(run, tmp_path, run_id)
    finally:
        for worker in (old, *([back] if back else [])):
            kill(worker)

    (note,) = [line for line in err.read_text().splitlines() if "waiting for a worker" in line]
    assert "waiting for a worker of version release-1" in note
    assert f"this code is version {build_id()}, whose workers cannot take the run" in note
    command = f"fanout worker --temporal {address} --task-queue {task_queue}"
    assert f"start one with `{command}` from the code of version release-1" in note
    move = f"fanout resume {run_id} --temporal {address} --task-queue {task_queue} --move"
    assert "if that code is gone, move the run to the current version" in note
    assert f"`{move}`" in note
    assert output["article"].startswith("# tides")


async def test_a_run_whose_code_is_gone_moves_to_the_current_version_reusing_finished_work(
    fake_llm: FakeLLM, client: Client, address: str, task_queue: str, tmp_path: Path
) -> None:
    """Release 1 (its section writer named ``write_part``) planned and wrote section 1, then
    its only worker died with sections 2 and 3 in flight; this code (``write_section``) takes
    the run over with ``fanout resume --move``: only sections 2 and 3 are written again."""
    expected = await article.graph.ainvoke({"topic": "tides"}, context=CONTEXT)
    fake_llm.reset()
    fake_llm.add_rules(*({"match": f"Fake name {n} for", "hold": True, "times": 1} for n in (2, 3)))
    code_1 = renamed_release(tmp_path / "release-1")
    run_id = f"moved-{task_queue}"
    old = start_worker(
        fake_llm, tmp_path, address, task_queue, "old", "--build-id", "release-1", code=code_1
    )
    try:
        wait_until_ready(tmp_path, "old", old)
        watching = submit(fake_llm, tmp_path, address, task_queue, run_id)
        wait_for_in_flight(fake_llm, 2)  # sections 2 and 3; the plan and section 1 are done
        await wait_for("section 1's result", lambda: completed(client, run_id, 2))
        kill(old)  # release 1 is gone for good, its writers in flight with it
        kill(watching)
    finally:
        kill(old)
    old_run = (await client.get_workflow_handle(run_id).describe()).run_id
    async with serving(client, task_queue):  # this code's worker: the current version
        resume = ["resume", run_id, "--temporal", address, "--task-queue", task_queue, "--move"]
        refused = await asyncio.to_thread(fanout, fake_llm, tmp_path, *resume)
        renamed = ["--rename", "write_part=write_section", "--json"]
        moved = await asyncio.to_thread(fanout, fake_llm, tmp_path, *resume, *renamed)
    description = await client.get_workflow_handle(run_id).describe()
    new_run, memo = description.run_id, await description.memo()
    fake_llm.release()

    assert refused.returncode == 2, refused.stderr
    assert "the current code has no node write_part" in refused.stderr
    assert "--rename OLD=NEW" in refused.stderr
    output = json_result(moved)
    assert "2 finished activities reused (2 LLM calls not made again)" in moved.stderr
    assert {k: v for k, v in output.items() if k not in ("thread_id", "usage")} == expected
    # The plan and section 1 once; sections 2 and 3 again: they were in flight at the death.
    assert article_calls(fake_llm.log()) == {"plan": 1, "s1": 1, "s2": 2, "s3": 2}
    assert output["usage"]["llm_calls"] == 2  # what the moved run made
    assert memo[MOVED_FROM] == old_run and old_run != new_run


async def completed(client: Client, run_id: str, count: int) -> bool:
    """Whether run ``run_id`` has finished ``count`` activities."""
    handle = client.get_workflow_handle(run_id)
    events = [e async for e in handle.fetch_history_events()]
    done = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    return sum(e.event_type == done for e in events) >= count


async def test_nondeterminism_is_reported_within_seconds_not_a_hang(
    fake_llm: FakeLLM, client: Client, address: str, task_queue: str, tmp_path: Path
) -> None:
    """Two releases forced onto one version (``--build-id``): what versioning prevents."""
    fake_llm.add_rules(SLOW_WRITERS)
    code_2 = release(tmp_path / "release-2", ADDED_LLM_NODE)
    old = start_worker(fake_llm, tmp_path, address, task_queue, "v1", "--build-id", "same")
    new = None
    run_id = f"nde-{uuid.uuid4().hex[:8]}"
    try:
        wait_until_ready(tmp_path, "v1", old)
        cli = submit(fake_llm, tmp_path, address, task_queue, run_id)
        wait_for_in_flight(fake_llm, 3)
        kill(old)  # release 1 is gone; release 2 under the same version takes the run
        new = start_worker(
            fake_llm, tmp_path, address, task_queue, "v2", "--build-id", "same", code=code_2
        )
        wait_until_ready(tmp_path, "v2", new)
        started = time.monotonic()
        code = cli.wait(timeout=60)
        waited = time.monotonic() - started
        with pytest.raises(RunStuckError) as stuck:
            await run_graph(client, "article", {"topic": "tides"}, CONTEXT, run_id=run_id)
        fake_llm.reset()  # the way out: the run moved, release 2 runs it from its plan
        resume = ["resume", run_id, "--temporal", address, "--task-queue", task_queue]
        moved = await asyncio.to_thread(fanout, fake_llm, tmp_path, *resume, "--move", "--json")
    finally:
        for worker in (old, *([new] if new else [])):
            kill(worker)

    err = (tmp_path / f"{run_id}.err").read_text()
    print(f"\nthe CLI reported the stuck run {waited:.1f} s after release 2's worker started")
    assert code == 1
    assert (tmp_path / f"{run_id}.out").read_text() == ""
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"run {run_id} is stuck" in line and "NON_DETERMINISTIC_ERROR" in line
    assert "TMPRL1100" in line
    assert stuck.value.cause == "NON_DETERMINISTIC_ERROR" and stuck.value.run_id == run_id
    assert f"`fanout resume {run_id} --temporal HOST:PORT --move`" in str(stuck.value)
    assert waited < 30
    assert json_result(moved)["article"].startswith("# tides")
    # The writers in flight at release 1's death may have finished on release 2's worker while
    # the run was stuck: reused too. Then release 2's new node; the others, never the plan.
    reused = int(re.search(r"(\d+) finished activities reused", moved.stderr)[1])  # type: ignore[index]
    calls = article_calls(fake_llm.log())
    assert "plan" not in calls and calls.pop("other") == 1
    assert 4 - reused <= sum(calls.values()) <= 3, (reused, calls)


def test_worker_versions_are_digests_of_the_code(tmp_path: Path) -> None:
    code_2 = release(tmp_path / "release-2", CHANGED_STEP)
    script = "from langgraph_fanout.temporal.versioning import build_id; print(build_id())"
    ids = [
        subprocess.run(
            [sys.executable, "-c", script], cwd=code, capture_output=True, text=True, check=True
        ).stdout.strip()
        for code in (REPO, REPO, code_2)
    ]
    assert ids[0] == ids[1] != ids[2]
    assert len(ids[0]) == 12
