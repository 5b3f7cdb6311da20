"""Operating Temporal runs: server outages, a CLI that dies or is stopped, no worker yet, runs
and show.

A real ``temporal server start-dev`` keeping its state in a file (killed with SIGKILL and
started again on the same port), real ``fanout worker`` and ``fanout`` processes, and the
fake LLM, whose request log counts every LLM call.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.temporal_cluster import temporal_binary

temporal_binary()  # skips the module (fails under CI) without the [temporal] extra

from temporalio.client import Client  # noqa: E402

from langgraph_fanout.temporal.client import start_run  # noqa: E402
from langgraph_fanout.temporal.watch import RunWatcher  # noqa: E402
from langgraph_fanout.temporal.worker import serving  # noqa: E402
from state.context import Context  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.fanout_cli import (  # noqa: E402
    Process,
    Terminal,
    fanout,
    json_result,
    start_fanout,
    start_on_terminal,
)
from tests.temporal_cluster import (  # noqa: E402
    DevServer,
    attempts_at,
    kill,
    start_worker,
    wait_for_text,
    wait_until_ready,
)
from tests.test_cli_review import PROMPT  # noqa: E402
from tests.test_durability import research_calls, wait_for_in_flight  # noqa: E402

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(300)]

OUTAGE_SECONDS = 30.0
SIGNALS = [signal.SIGINT] * 3 + [signal.SIGTERM] * 2
HANG = 10.0
"""Seconds after which a CLI that has not exited counts as hung (it should take under 2)."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    """A dev server of the test's own (it gets killed), its state in the test's folder."""
    dev = DevServer(tmp_path)
    dev.start()
    yield dev
    dev.kill()


def submit(fake: FakeLLM, cwd: Path, *args: str) -> Process:
    """``fanout *args`` in the background; stdout and stderr in cwd/submit.out|err."""
    return start_fanout(fake, cwd, *args, stdout="submit.out", stderr="submit.err")


def finished(process: Process, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = process.wait(timeout=180)
    out, err = (cwd / "submit.out").read_text(), (cwd / "submit.err").read_text()
    return subprocess.CompletedProcess(process.args, code, out, err)


def test_cli_rides_out_a_30_second_outage_and_prints_only_the_json(
    fake_llm: FakeLLM, server: DevServer, tmp_path: Path
) -> None:
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4}, {"match": "Fake questions", "latency": 4.0}
    )
    worker = start_worker(fake_llm, tmp_path, server.address, "ops", "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        run = submit(
            fake_llm, tmp_path, "research", "tides", "--json",
            "--temporal", server.address, "--task-queue", "ops",
        )  # fmt: skip
        wait_for_in_flight(fake_llm, 4)  # the researchers are running
        server.kill()
        down = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        server.start()
        print(f"\nTemporal down for {time.monotonic() - down:.1f} s")
        result = finished(run, tmp_path)
        assert worker.poll() is None, "the worker survived the outage"
    finally:
        kill(worker)

    output = json_result(result)  # stdout holds exactly one JSON object
    assert output["task_count"] == 4
    lines = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert lines[0].startswith("note: lost Temporal (")
    assert lines[1].startswith("note: reached Temporal again after ")
    assert "Traceback" not in result.stderr
    calls = research_calls(fake_llm.log())
    print(f"LLM calls with a {OUTAGE_SECONDS:.0f} s outage mid-run: {calls}")
    # The researchers in flight when the server died may run again (their heartbeats were
    # due while it was down); nothing else does.
    assert calls["plan"] == 1 and calls["writer"] == 1
    assert all(1 <= calls[f"q{n}"] <= 2 for n in (1, 2, 3, 4))
    assert output["usage"]["llm_calls"] == sum(calls.values())


def test_thread_of_an_existing_run_attaches_instead_of_starting_another(
    fake_llm: FakeLLM, server: DevServer, tmp_path: Path
) -> None:
    fake_llm.add_rules({"match": "Fake questions", "hold": True})
    worker = start_worker(fake_llm, tmp_path, server.address, "ops", "w1")
    run_id = f"attach-{uuid.uuid4().hex[:8]}"
    command = (
        "research", "tides", "--json", "--thread", run_id,
        "--temporal", server.address, "--task-queue", "ops",
    )  # fmt: skip
    try:
        wait_until_ready(tmp_path, "w1", worker)
        first = submit(fake_llm, tmp_path, *command)
        wait_for_in_flight(fake_llm, 3)
        kill(first)  # the CLI dies; the run goes on in Temporal, its researchers held
        attaching = submit(fake_llm, tmp_path, *command)
        wait_for_text(tmp_path / "submit.err", "attached to the run", attaching)
        fake_llm.release()  # the run finishes while the second CLI follows it
        again = finished(attaching, tmp_path)
        twice = fanout(fake_llm, tmp_path, *command)  # the run has ended: its result again
        shown = fanout(fake_llm, tmp_path, "show", run_id, "--json", "--temporal", server.address)
        listed = fanout(fake_llm, tmp_path, "runs", "--json", "--temporal", server.address)
        other = fanout(
            fake_llm, tmp_path, "research", "another topic", "--thread", run_id,
            "--temporal", server.address, "--task-queue", "ops",
        )  # fmt: skip
        other_settings = fanout(fake_llm, tmp_path, *command, "--max-tokens", "99")
    finally:
        kill(worker)

    assert again.returncode == 0, again.stderr
    assert "attached to the run this thread already holds" in again.stderr
    output = json_result(again)
    assert json_result(twice) == output
    assert research_calls(fake_llm.log()) == {
        "plan": 1,
        "q1": 1,
        "q2": 1,
        "q3": 1,
        "writer": 1,
    }
    activities, made = attempts_at(server.address, run_id)
    if made == activities:
        assert output["usage"]["llm_calls"] == 5
    else:  # an attempt lost on a loaded machine counts as a call, though it may have made none
        assert 5 <= output["usage"]["llm_calls"] <= made
    show = json_result(shown)
    assert show["status"] == "done" and show["graph"] == "research"
    assert show["values"] == {k: v for k, v in output.items() if k not in ("thread_id", "usage")}
    assert show["usage"] == output["usage"]
    (row,) = [r for r in json.loads(listed.stdout) if r["thread_id"] == run_id]
    assert row | {"started": ""} == {
        "thread_id": run_id, "graph": "research", "status": "done", "started": "",
        "door": "temporal", "input": "tides",
    }  # fmt: skip
    assert other.returncode == 2
    assert f"thread {run_id!r} holds another run" in other.stderr
    assert other_settings.returncode == 2
    assert "was started with other settings (max_tokens=" in other_settings.stderr


def test_cli_says_it_waits_for_a_worker_and_goes_on_when_one_comes(
    fake_llm: FakeLLM, server: DevServer, tmp_path: Path
) -> None:
    run = submit(
        fake_llm, tmp_path, "evaluate", "A recipe for lemonade.", "--json",
        "--temporal", server.address, "--task-queue", "lonely",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "waiting for a worker" not in (tmp_path / "submit.err").read_text():
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    notice = next(
        line
        for line in (tmp_path / "submit.err").read_text().splitlines()
        if "waiting for a worker" in line
    )
    assert "on task queue 'lonely'" in notice
    assert (
        f"start one with `fanout worker --temporal {server.address} --task-queue lonely`" in notice
    )
    worker = start_worker(fake_llm, tmp_path, server.address, "lonely", "w1")
    try:
        result = finished(run, tmp_path)
    finally:
        kill(worker)
    assert json_result(result)["votes"] >= 0
    assert "note: a worker took the run's tasks" in result.stderr


class CountedDescribes:
    """A workflow handle that counts the reads of its run's description."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.describes = handle, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    async def describe(self, **kwargs: Any) -> Any:
        self.describes += 1
        return await self.handle.describe(**kwargs)


async def test_the_watcher_long_polls_and_reads_the_description_less_while_nothing_moves(
    fake_llm: FakeLLM, client: Client, task_queue: str
) -> None:
    """Four section writers 10 s long: the history says nothing for 10 s. The watcher reads
    the description (attempts, unclaimed tasks) after the history moves, then every 1, 2 s;
    a read every half-second would make 20 or more."""
    fake_llm.add_rules({"match": "Article topic", "latency": 10.0})
    context = Context(model="openai:fake-model", max_sections=4)
    async with serving(client, task_queue):
        handle = await start_run(
            client, "article", {"topic": "tides"}, context, task_queue=task_queue
        )
        counted = CountedDescribes(handle)
        started = time.monotonic()
        output = await RunWatcher(client, counted, task_queue).until_paused_or_done()  # type: ignore[arg-type]
        took = time.monotonic() - started

    print(f"\n{counted.describes} reads of the description in {took:.1f} s")
    assert isinstance(output, dict) and output["article"].startswith("# tides")
    assert counted.describes <= 8 + took / 2


def test_show_and_resume_of_an_unknown_thread(fake_llm: FakeLLM, address: str, tmp_path: Path):
    shown = fanout(fake_llm, tmp_path, "show", "no-such-run", "--temporal", address)
    resumed = fanout(fake_llm, tmp_path, "resume", "no-such-run", "--temporal", address)

    for result in (shown, resumed):
        assert result.returncode == 2
        assert "no Temporal run with thread id 'no-such-run'" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_worker_stopped_mid_run_exits_cleanly_and_another_finishes_the_run(
    fake_llm: FakeLLM, server: DevServer, tmp_path: Path
) -> None:
    fake_llm.add_rules({"match": "Article topic", "hold": True, "times": 3})
    worker = start_worker(fake_llm, tmp_path, server.address, "ops", "w1")
    other = None
    try:
        wait_until_ready(tmp_path, "w1", worker)
        run = submit(
            fake_llm, tmp_path, "article", "tides", "--json",
            "--temporal", server.address, "--task-queue", "ops",
        )  # fmt: skip
        wait_for_in_flight(fake_llm, 3)  # the writers are running, the workflow is cached
        stopping = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        took = time.monotonic() - stopping
        fake_llm.release()
        other = start_worker(fake_llm, tmp_path, server.address, "ops", "w2")
        result = finished(run, tmp_path)
    finally:
        kill(worker)
        if other is not None:
            kill(other)

    print(f"\nworker stopped {took:.1f} s after SIGTERM")
    log = (tmp_path / "w1.err").read_text()
    assert code == 0 and "worker stopped" in log
    assert "Traceback" not in log and "Exception ignored" not in log, log
    assert json_result(result)["article"].startswith("# tides")


# --- Ctrl-C and SIGTERM: 20 real CLIs on pseudo-terminals, 5 in each state of a run ---


def start_watched(fake: FakeLLM, cwd: Path, address: str, queue: str, *extra: str) -> Terminal:
    return start_on_terminal(
        fake, cwd, "article", f"Tides {uuid.uuid4().hex[:6]}", "--temporal", address,
        "--task-queue", queue, *extra,
    )  # fmt: skip


def stop_each(children: list[Terminal], address: str) -> tuple[list[float], list[str]]:
    """Send each child its signal; the seconds each took to exit, and the runs it named."""
    took, runs = [], []
    for child, signum in zip(children, SIGNALS, strict=True):
        sent = time.monotonic()
        if signum == signal.SIGINT:
            child.sendintr()  # Ctrl-C, through the terminal
        else:
            child.kill(signum)
        try:
            child.expect(pexpect.EOF, timeout=HANG)
        except pexpect.TIMEOUT:
            child.kill(signal.SIGKILL)
            raise AssertionError(f"hung after {signum.name}:\n{child.before}") from None
        took.append(time.monotonic() - sent)
        child.close()
        assert child.exitstatus == 128 + signum, (signum.name, child.before)
        run_id = re.search(r"fanout resume (\S+) --temporal", child.before)
        assert run_id, f"no way back printed:\n{child.before}"
        assert f"--temporal {address}" in child.before
        runs.append(run_id[1])
    return took, runs


def status(address: str, run_id: str) -> str:
    described = subprocess.run(
        [temporal_binary(), "workflow", "describe", "--workflow-id", run_id, "--address",
         address, "--output", "json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return str(json.loads(described.stdout)["workflowExecutionInfo"]["status"])


def test_ctrl_c_and_sigterm_stop_watching_at_once_in_every_state(
    fake_llm: FakeLLM, server: DevServer, tmp_path: Path
) -> None:
    """Waiting for a worker, running, paused at review, Temporal out of reach: 5 CLIs each,
    3 stopped with Ctrl-C and 2 with SIGTERM. Each exits with 128 + the signal and says how
    to follow the run again; the runs go on."""
    fake_llm.add_rules({"match": "Article topic", "hold": True})  # writers stay in flight
    address, took = server.address, {}

    idle = [start_watched(fake_llm, tmp_path, address, "nobody") for _ in SIGNALS]
    for child in idle:
        child.expect("waiting for a worker", timeout=60)
    took["waiting for a worker"], _ = stop_each(idle, address)

    worker = start_worker(fake_llm, tmp_path, address, "ops", "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        running = [start_watched(fake_llm, tmp_path, address, "ops") for _ in SIGNALS]
        for child in running:
            child.expect("write_section", timeout=60)  # its row in the live table
        took["running"], runs = stop_each(running, address)
        assert {status(address, run) for run in runs} == {"WORKFLOW_EXECUTION_STATUS_RUNNING"}

        paused = [start_watched(fake_llm, tmp_path, address, "ops", "--review") for _ in SIGNALS]
        for child in paused:
            child.expect(PROMPT, timeout=60)
        took["paused at review"], _ = stop_each(paused, address)

        cut_off = [start_watched(fake_llm, tmp_path, address, "ops") for _ in SIGNALS]
        for child in cut_off:
            child.expect("write_section", timeout=60)  # its row in the live table
        server.kill()
        for child in cut_off:
            child.expect("lost Temporal", timeout=60)
        took["Temporal out of reach"], _ = stop_each(cut_off, address)
    finally:
        kill(worker)

    for state, seconds in took.items():
        print(f"{state}: exited {', '.join(f'{s:.2f}' for s in seconds)} s after the signal")
