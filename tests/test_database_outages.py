"""PostgreSQL restarts under a running ``fanout``: ridden out, and a lost lock is fenced.

Each test has a PostgreSQL cluster of its own, stopped with ``pg_ctl -m immediate`` (as a crash
would) while researchers are in flight at the fake LLM, then started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from langgraph_fanout.production.postgres import PostgresCluster, find_bindir, postgres_cluster
from langgraph_fanout.production.redis_server import find_redis_server, redis_server
from tests.aegra_cluster import AegraCluster, require_aegra, start_cluster
from tests.fake_llm import FakeLLM
from tests.fanout_cli import RUN_TIMEOUT, Process, fanout, json_result, saved_rows, start_fanout
from tests.fanout_cli import wait_for_results as wait_for_saved
from tests.langgraph_server import Server, server_env, start_server
from tests.requirements import unavailable
from tests.test_aegra import log_records
from tests.test_durability import new_thread, research_calls, show, wait_for_in_flight
from tests.test_thread_lock import branches

pytestmark = [pytest.mark.cli, pytest.mark.postgres, pytest.mark.timeout(240)]

ONE_RUN = {"plan": 1, "q1": 1, "q2": 1, "q3": 1, "q4": 1, "writer": 1}
"""The LLM calls of one research run on four questions: the minimum."""
HOLD_Q3_Q4 = [
    {"schema": "ResearchPlan", "items": 4},
    {"match": "Fake questions 3 for", "hold": True, "times": 1},
    {"match": "Fake questions 4 for", "hold": True, "times": 1},
]
"""Researchers 3 and 4 wait at the fake until the test releases them."""


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the test's own, to stop and start."""
    bindir = find_bindir()
    if bindir is None:
        unavailable("PostgreSQL is not installed", install="apt-get install postgresql")
    assert bindir is not None
    with postgres_cluster(bindir, fsync=False) as started:
        yield started


def start_research(fake: FakeLLM, cwd: Path, db: str, thread: str) -> Process:
    """``fanout research`` on four questions, held once researchers 1 and 2 are saved."""
    cwd.mkdir(exist_ok=True)
    process = start_fanout(fake, cwd, "research", "tides", "--thread", thread, "--db", db, "--json")
    wait_for_saved(db, "research", thread, "research_question", 2)
    wait_for_in_flight(fake, 2)
    return process


def finish(process: Process, cwd: Path) -> tuple[int, str, str]:
    """Wait for a ``start_fanout`` process: its exit code, stdout and stderr."""
    try:
        code = process.wait(timeout=RUN_TIMEOUT + 60)
    finally:
        if process.poll() is None:
            process.kill()
    return code, (cwd / "fanout.out").read_text(), (cwd / "fanout.err").read_text()


def hold_researchers(topic: str) -> list[dict[str, object]]:
    """Rules: the plan of ``topic`` has 4 questions; researchers 3 and 4 wait for a release."""
    return [
        {"match": f"Topic: {topic}", "schema": "ResearchPlan", "items": 4},
        {"match": f"Fake questions 3 for: Topic: {topic}", "hold": True, "times": 1},
        {"match": f"Fake questions 4 for: Topic: {topic}", "hold": True, "times": 1},
    ]


def calls_on(fake: FakeLLM, topic: str) -> dict[str, int]:
    """The LLM calls of the research runs on ``topic``, by role."""
    return research_calls([r for r in fake.log() if f"Topic: {topic}" in r["last_user"]])


def check_report(output: dict[str, object], topic: str) -> None:
    """A research run's output on ``topic``: four findings in plan order, one report."""
    assert output["task_count"] == 4, output
    findings = output["findings"]
    assert isinstance(findings, list)
    assert [f["question"] for f in findings] == [
        f"Fake questions {n} for: Topic: {topic}" for n in (1, 2, 3, 4)
    ]
    assert str(output["report"]).startswith(f"Fake answer to: Topic: {topic}")


AEGRA_RUNS = 10


@pytest.fixture
def aegra_on_cluster(
    fake_llm: FakeLLM, cluster: PostgresCluster, tmp_path: Path
) -> Iterator[AegraCluster]:
    """Two Aegra replicas on the test's cluster, with a Redis of their own."""
    require_aegra()
    binary = find_redis_server()
    assert binary is not None
    workdir = tmp_path / "aegra"
    workdir.mkdir()
    tmp_path.chmod(0o755)  # user postgres passes through to nothing here, but Aegra's cwd
    with redis_server(binary) as redis:
        replicas = start_cluster(fake_llm, cluster.url, redis.url, workdir, replicas=2)
        try:
            yield replicas
        finally:
            replicas.stop()


def run_events(cluster: AegraCluster, run_id: str) -> list[str]:
    """What Aegra's replicas logged about run ``run_id``: time, replica, event (for failures)."""
    return sorted(
        f"{record['timestamp']} {replica.port} {record['event']}"
        for replica in cluster.replicas
        for record in log_records(replica)
        if record.get("run_id") == run_id
    )


SERVES_AGAIN = 10.0
"""Seconds after PostgreSQL's return by which a server's thread-state API must answer again."""


def serves_state(url: str, thread: str) -> float:
    """Seconds until ``GET /threads/{thread}/state`` on the server at ``url`` answers 200."""
    started = time.monotonic()
    with httpx.Client(timeout=3.0, trust_env=False) as http:
        while time.monotonic() - started < 3 * SERVES_AGAIN:
            try:
                if http.get(f"{url}/threads/{thread}/state").status_code == 200:
                    break
            except httpx.TransportError:
                pass  # timed out: the server still waits for a connection
            time.sleep(0.2)
    return time.monotonic() - started


def threads(
    cli_thread: str, runs: list[tuple[Any, str, Any]], db: str, aegra: AegraCluster
) -> list[tuple[str, str]]:
    """Each run's thread and database: ``fanout``'s and ``langgraph dev``'s, then Aegra's."""
    return [(cli_thread, db), (runs[0][1], db)] + [(t, aegra.database_url) for _, t, _ in runs[1:]]


@pytest.mark.server
@pytest.mark.aegra
@pytest.mark.timeout(480)  # 75-90 s alone; over 240 s once in CI, beside the other workers
@pytest.mark.parametrize(
    ("down", "release_while_down"),
    [pytest.param(10, False, id="10s-calls-in-flight"), pytest.param(60, True, id="60s")],
)
def test_every_door_rides_out_a_postgres_restart(
    fake_llm: FakeLLM,
    tmp_path: Path,
    cluster: PostgresCluster,
    aegra_on_cluster: AegraCluster,
    down: float,
    release_while_down: bool,
) -> None:
    """A ``fanout`` run, a ``langgraph dev`` run (FANOUT_DB on the cluster) and ten runs on two
    Aegra replicas, all with researchers in flight.

    10 s: the calls in flight answer after the restart. 60 s: they answer while the database
    is down, so their results wait a minute to be saved.
    """
    db = cluster.url
    aegra_topics = [f"aegra-{n}-tides" for n in range(AEGRA_RUNS)]
    for topic in ["cli-tides", "dev-tides", *aegra_topics]:
        fake_llm.add_rules(*hold_researchers(topic))
    (tmp_path / "dev").mkdir()
    server = start_server(tmp_path / "dev", server_env(fake_llm, db))
    try:
        dev = server.sync_client()
        dev_thread = dev.threads.create()["thread_id"]
        runs = [
            (dev, dev_thread, dev.runs.create(dev_thread, "research", input={"topic": "dev-tides"}))
        ]
        for n, topic in enumerate(aegra_topics):
            client = get_sync_client(url=aegra_on_cluster.urls[n % 2])
            thread = client.threads.create()["thread_id"]
            runs.append(
                (client, thread, client.runs.create(thread, "research", input={"topic": topic}))
            )
        cli_thread = new_thread("outage")
        cli = start_fanout(
            fake_llm,
            tmp_path,
            "research",
            "cli-tides",
            "--thread",
            cli_thread,
            "--db",
            db,
            "--json",
        )
        # Researchers 3 and 4 of every run held at the fake, 1 and 2 answered (saved or on
        # their way): the held calls must not outlast the LLM timeout (60 s) either.
        wait_for_in_flight(fake_llm, 2 * (AEGRA_RUNS + 2), timeout=60)

        cluster.stop("immediate")
        stopped = time.monotonic()
        outage = datetime.now(UTC).isoformat()
        if release_while_down:
            fake_llm.release()
        time.sleep(down)
        cluster.start()
        back = time.monotonic()
        serving = {
            url: serves_state(url, thread)
            for url, thread in [(server.url, dev_thread)]
            + [(url, runs[1 + n][1]) for n, url in enumerate(aegra_on_cluster.urls)]
        }
        fake_llm.release()
        code, out, err = finish(cli, tmp_path)
        outputs = [client.runs.join(thread, run["run_id"]) for client, thread, run in runs]
        statuses = [
            client.runs.get(thread, run["run_id"])["status"] for client, thread, run in runs
        ]
        ended = time.monotonic()
    finally:
        server.kill()

    assert code == 0, err
    assert "Traceback" not in err
    assert "lost the database" in err and "is back after" in err, err
    assert max(serving.values()) < SERVES_AGAIN, serving  # each server's state API
    check_report(json_result(subprocess.CompletedProcess([], code, out, err)), "cli-tides")
    assert statuses == ["success"] * len(runs), (statuses, server.output()[-3000:])
    for output, topic in zip(outputs, ["dev-tides", *aegra_topics], strict=True):
        check_report(output, topic)
    repeated = 0
    for topic in ["cli-tides", "dev-tides", *aegra_topics]:
        calls = calls_on(fake_llm, topic)
        if not topic.startswith("aegra"):
            assert calls == ONE_RUN, (topic, calls, server.output()[-6000:])  # nothing twice
            continue
        # Aegra's lease on a run ran out in the outage (its heartbeats failed): once the
        # database is back its reaper queues the run again, and the replica that had it
        # cancels it at its next heartbeat, after it took up its thread again. The calls it
        # had in flight then (researchers 3 and 4, or the writer) run again on the other.
        finished_before = {k: v for k, v in calls.items() if k in ("plan", "q1", "q2")}
        run_id = runs[1 + aegra_topics.index(topic)][2]["run_id"]
        assert finished_before == {"plan": 1, "q1": 1, "q2": 1}, (
            topic,
            calls,
            f"database stopped at {outage}",  # a lease lost before: the run moved then too
            run_events(aegra_on_cluster, run_id),
        )
        assert calls.keys() == ONE_RUN.keys() and max(calls.values()) <= 2, (topic, calls)
        repeated += sum(calls.values()) - sum(ONE_RUN.values())
    for thread, database in threads(cli_thread, runs, db, aegra_on_cluster):
        assert branches(database, thread) == 0
    assert show(fake_llm, tmp_path, db, cli_thread)["status"] == "done"
    print(
        f"\n[{down:g}s] down {back - stopped:.1f} s; all finished {ended - back:.1f} s after; "
        f"{repeated} calls in flight ran again; state API back after "
        + ", ".join(f"{seconds:.1f} s" for seconds in serving.values())
    )


def test_a_holder_that_lost_its_lock_never_writes_after_the_takeover(
    fake_llm: FakeLLM, tmp_path: Path, cluster: PostgresCluster
) -> None:
    """A frozen (SIGSTOP) past a restart; B resumes the thread and finishes; A thawed stops."""
    fake_llm.add_rules(*HOLD_Q3_Q4)
    thread = new_thread("fenced")
    a = start_research(fake_llm, tmp_path / "a", cluster.url, thread)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        cluster.stop("immediate")  # A's advisory lock dies with its session
        cluster.start()
        b = fanout(fake_llm, tmp_path, "resume", thread, "--db", cluster.url, "--json")
        assert b.returncode == 0, b.stderr
        rows = saved_rows(cluster.url, thread)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    fake_llm.release()  # A's two researchers answer now
    code, _, err = finish(a, tmp_path / "a")

    assert code == 4, err
    assert f"thread {thread!r} was taken over by process" in err, err
    assert "Traceback" not in err
    assert saved_rows(cluster.url, thread) == rows  # nothing of A's after the takeover
    assert branches(cluster.url, thread) == 0
    shown = show(fake_llm, tmp_path, cluster.url, thread)
    assert shown["status"] == "done"
    assert shown["values"]["report"] == json_result(b)["report"]
    calls = research_calls(fake_llm.log())
    assert calls == {"plan": 1, "q1": 1, "q2": 1, "q3": 2, "q4": 2, "writer": 1}  # B's 3, 4


def test_on_sqlite_a_frozen_holder_keeps_its_thread(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """The kernel keeps a frozen process's file lock: nobody takes the thread, so no fence."""
    fake_llm.add_rules(*HOLD_Q3_Q4)
    db = str(tmp_path / "runs.sqlite")
    thread = new_thread("frozen")
    a = start_research(fake_llm, tmp_path / "a", db, thread)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        b = fanout(fake_llm, tmp_path, "resume", thread, "--db", db)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    fake_llm.release()
    code, out, err = finish(a, tmp_path / "a")

    assert b.returncode == 2 and "is running elsewhere" in b.stderr, b.stderr
    assert code == 0, err
    assert json_result(subprocess.CompletedProcess([], code, out, err))["task_count"] == 4
    assert research_calls(fake_llm.log()) == ONE_RUN


STARTERS = 8


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_eight_runs_start_together_on_an_empty_database(
    fake_llm: FakeLLM, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """Their table set-ups are serialized: every run starts, and every one finishes.

    On PostgreSQL one of the eight starters is a ``langgraph dev`` server (its checkpointer
    sets the tables up as it starts), started in the same moment as seven CLIs.
    """
    servers: list[Server] = []
    clis = STARTERS
    if kind == "postgres":
        db = request.getfixturevalue("cluster").url  # a new cluster: no table yet
        (tmp_path / "dev").mkdir()
        env = server_env(fake_llm, db)
        starting = threading.Thread(
            target=lambda: servers.append(start_server(tmp_path / "dev", env))
        )
        starting.start()
        clis -= 1
    else:
        db = str(tmp_path / "new.sqlite")
    runs = []
    for n in range(clis):
        cwd = tmp_path / f"p{n}"
        cwd.mkdir()
        runs.append((cwd, start_fanout(fake_llm, cwd, "research", f"topic {n}", "--db", db)))

    results = [finish(process, cwd) for cwd, process in runs]
    if kind == "postgres":
        starting.join()
        assert servers, "langgraph dev did not start (see the test's log)"
        (server,) = servers
        try:
            client = server.sync_client()
            thread = client.threads.create()["thread_id"]
            client.runs.wait(thread, "research", input={"topic": "served"})
        finally:
            server.kill()

    assert [code for code, _, _ in results] == [0] * clis, [err for _, _, err in results]
    listed = fanout(fake_llm, tmp_path, "runs", "--db", db, "--json", "--limit", "20")
    assert sorted(r["status"] for r in json.loads(listed.stdout)) == ["done"] * STARTERS
