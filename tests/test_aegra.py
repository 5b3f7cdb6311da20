"""The graphs on Aegra: two real replicas sharing one PostgreSQL and one Redis.

The replicas are the session's (``aegra`` in tests/conftest.py, tests/aegra_cluster.py):
``aegra_api`` 0.11 under uvicorn from the production virtualenv (Python >= 3.12), the suite's
PostgreSQL, a Redis of the session, the fake LLM as the model, leases of 10 s. Runs go to the
replicas in turn, as a load balancer would send them; whichever replica's worker pops a run
from the Redis queue runs it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph_sdk import get_client, get_sync_client

from langgraph_fanout.production.postgres import free_port
from langgraph_fanout.production.replicas import CONFIG, Replica
from tests.aegra_cluster import AegraCluster, offline_env
from tests.docs import README, blocks, section
from tests.fake_llm import FakeLLM
from tests.production_launcher import launch
from tests.test_durability import research_calls, research_role, wait_for_in_flight
from tests.test_server import run_docs_curl_examples, run_docs_sdk_example

pytestmark = [pytest.mark.aegra, pytest.mark.xdist_group("aegra"), pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent
LANGGRAPH_JSON = ROOT / "langgraph.json"
DOCS = ROOT / "docs" / "production.md"
ONE_RUN = {"plan": 1, "q1": 1, "q2": 1, "q3": 1, "writer": 1}
"""The LLM calls of one research run (the fake plans three questions)."""


def calls_on(fake: FakeLLM, topic: str) -> list[dict[str, Any]]:
    """The LLM calls of the research runs on ``topic`` (topics must not prefix one another)."""
    return [r for r in fake.log() if f"Topic: {topic}" in r["last_user"]]


def calls_of(fake: FakeLLM, topic: str) -> dict[str, int]:
    """How many calls of each role (:func:`research_role`) the runs on ``topic`` made."""
    return research_calls(calls_on(fake, topic))


def log_records(replica: Replica) -> list[dict[str, Any]]:
    """The JSON records of ``replica``'s log."""
    records = []
    for line in replica.output().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line from outside the logging setup
    return records


def picked_up(replica: Replica) -> list[str]:
    """The runs ``replica``'s workers took from the queue."""
    return [r["run_id"] for r in log_records(replica) if r.get("event") == "Worker picked up run"]


def finished_runs(replica: Replica) -> list[str]:
    """The runs whose execution on ``replica`` has ended (finished, failed or cancelled)."""
    return [r["run_id"] for r in log_records(replica) if r.get("event") == "Worker finished run"]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` (a replica's log or the database) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def lease_holders(cluster: AegraCluster) -> dict[str, int]:
    """Run id -> process id of the replica whose worker holds the run's lease."""
    with psycopg.connect(cluster.database_url) as conn:
        rows = conn.execute("SELECT run_id, claimed_by FROM runs WHERE claimed_by IS NOT NULL")
        claims = rows.fetchall()
    return {str(run): int(re.search(r"-(\d+)-worker-\d+$", claim)[1]) for run, claim in claims}


# --- configuration --------------------------------------------------------------------------


def test_aegra_json_serves_the_graphs_of_langgraph_json() -> None:
    aegra = json.loads(CONFIG.read_text())
    assert aegra["graphs"] == json.loads(LANGGRAPH_JSON.read_text())["graphs"]
    assert aegra["dependencies"] == ["."]  # the project's packages, on Aegra's import path


# --- the documented API -----------------------------------------------------------------------


def test_docs_curl_examples_run_on_aegra(aegra: AegraCluster, fake_llm: FakeLLM) -> None:
    run_docs_curl_examples(aegra.urls[0])


def test_docs_sdk_example_runs_on_aegra(aegra: AegraCluster, fake_llm: FakeLLM) -> None:
    run_docs_sdk_example(aegra.urls[1])


def docs_blocks() -> list[str]:
    """The bash blocks of docs/production.md."""
    return re.findall(r"^```bash\n(.*?)^```", DOCS.read_text(), flags=re.M | re.S)


def free_port_and_next() -> int:
    """A port that is free, with the next one free too (replicas take consecutive ports)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.mark.timeout(420)
def test_the_production_docs_commands_run(
    aegra: AegraCluster, fake_llm: FakeLLM, tmp_path: Path, traversable_tmp: Path
) -> None:
    """Exactly as docs/production.md writes them, default data place included (under
    $XDG_DATA_HOME here); Ctrl-C and SIGTERM stop them with exit 0."""
    serve, calls, existing = docs_blocks()
    assert serve.strip() == "make serve-production"
    readme = section(README, "## Production")
    assert re.findall(r"^make [\w-]+", readme, flags=re.M) == ["make serve-production"]
    own_port, joined_port = free_port_and_next(), free_port_and_next()
    env = offline_env(fake_llm) | {"XDG_DATA_HOME": str(traversable_tmp)}
    joined = re.sub(r"DATABASE_URL=\S+", f"DATABASE_URL={aegra.database_url}", existing)
    joined = re.sub(r"REDIS_URL=\S+", f"REDIS_URL={aegra.redis_url}", joined)
    joined = joined.replace("HOST=0.0.0.0", "HOST=127.0.0.1").strip()
    own = launch(serve.strip(), env | {"PRODUCTION_PORT": str(own_port)}, tmp_path / "own.log")
    other = env | {"PRODUCTION_PORT": str(joined_port), "XDG_DATA_HOME": str(tmp_path / "unused")}
    launchers = [own, launch(joined, other, tmp_path / "joined.log")]
    try:
        own.wait_serving()
        joined_pid = launchers[1].wait_serving()

        script = calls.replace("2026", str(own_port)).replace("2027", str(own_port + 1))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert '"status":"healthy"' in done.stdout and '"task_count": 3' in done.stdout
        (python,) = blocks(DOCS.read_text(), "python")
        created = subprocess.run(
            [sys.executable, "-c", python.replace("2026", str(own_port))],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert "'task_count': 3" in created.stdout
        kept = get_sync_client(url=f"http://127.0.0.1:{own_port}").threads.create()["thread_id"]

        # The joined replicas serve the session cluster's threads, and it theirs.
        shared = get_sync_client(url=f"http://127.0.0.1:{joined_port + 1}")
        thread = shared.threads.create()["thread_id"]
        shared.runs.wait(thread, "research", input={"topic": "Joined replicas"})
        state = get_sync_client(url=aegra.urls[0]).threads.get_state(thread)
        assert state["values"]["task_count"] == 3

        own.ctrl_c()
        os.kill(joined_pid, signal.SIGTERM)
        codes = [launcher.exit_code() for launcher in launchers]
    finally:
        for launcher in launchers:
            launcher.kill()
    assert codes == [0, 0], [launcher.output()[-3000:] for launcher in launchers]
    assert "stopped" in own.output() and "Traceback" not in own.output()
    assert not (tmp_path / "unused").exists()  # nothing of its own started
    assert (traversable_tmp / "langgraph-fanout" / "production" / "postgres").is_dir()

    # Its PostgreSQL stopped with it and kept the data: a thread made before is still there.
    again = launch(
        f"{serve.strip()} REPLICAS=1",
        env | {"PRODUCTION_PORT": str(own_port)},
        tmp_path / "again.log",
    )
    try:
        again.wait_serving()
        client = get_sync_client(url=f"http://127.0.0.1:{own_port}")
        assert client.threads.get(kept)["thread_id"] == kept
        again.ctrl_c()
        assert again.exit_code() == 0, again.output()[-3000:]
    finally:
        again.kill()


def test_plan_review_pauses_and_resumes_through_either_replica(
    aegra: AegraCluster, fake_llm: FakeLLM
) -> None:
    first, second = (get_sync_client(url=url) for url in aegra.urls)
    topic = "Review on Aegra"
    thread = first.threads.create()["thread_id"]

    paused = first.runs.wait(
        thread, "research", input={"topic": topic}, context={"review_plan": True}
    )
    assert isinstance(paused, dict)
    (interrupt,) = paused["__interrupt__"]
    questions = [f"Fake questions {i} for: Topic: {topic}" for i in (1, 2, 3)]
    assert interrupt["value"] == {"questions": questions}
    assert second.threads.get(thread)["status"] == "interrupted"
    state = second.threads.get_state(thread)
    assert [i["value"] for task in state["tasks"] for i in task["interrupts"]] == [
        interrupt["value"]
    ]
    assert calls_of(fake_llm, topic) == {"plan": 1}  # no worker before the decision

    result = second.runs.wait(thread, "research", command={"resume": {"approve": True}})
    assert isinstance(result, dict)
    assert result["review"] == {"decision": "approved", "reason": ""}
    assert [f["question"] for f in result["findings"]] == questions
    assert calls_of(fake_llm, topic) == ONE_RUN
    assert first.threads.get(thread)["status"] == "idle"


def test_a_spending_limit_pauses_and_a_raised_one_resumes_through_either_replica(
    aegra: AegraCluster, fake_llm: FakeLLM
) -> None:
    first, second = (get_sync_client(url=url) for url in aegra.urls)
    topic = "Limits on Aegra"
    thread = first.threads.create()["thread_id"]

    first.runs.wait(thread, "research", input={"topic": topic}, context={"max_llm_calls": 2})
    state = second.threads.get_state(thread)
    result = second.runs.wait(
        thread, "research", command={"resume": True}, context={"max_llm_calls": 5}
    )

    (pause,) = state["interrupts"]
    assert pause["value"]["kind"] == "spending_limit", pause
    assert pause["value"]["spent"]["llm_calls"] == 2
    assert len(pause["value"]["not_started"]) == 2  # researchers 2 and 3
    assert isinstance(result, dict) and result["task_count"] == 3
    assert calls_of(fake_llm, topic) == ONE_RUN  # none twice across the pause


# --- concurrency ------------------------------------------------------------------------------


async def test_twenty_concurrent_runs_all_finish_spread_over_both_replicas(
    aegra: AegraCluster, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(latency=0.1)
    clients = [get_client(url=url) for url in aegra.urls]
    taken = [len(picked_up(replica)) for replica in aegra.replicas]

    start = time.perf_counter()
    await clients[0].runs.wait(None, "research", input={"topic": "Concurrent single"})
    single = time.perf_counter() - start
    topics = [f"Concurrent {i:02d}" for i in range(20)]
    start = time.perf_counter()
    outputs = await asyncio.gather(
        *(
            clients[i % 2].runs.wait(None, "research", input={"topic": topic})
            for i, topic in enumerate(topics)
        )
    )
    wall = time.perf_counter() - start
    for client in clients:
        await client.aclose()

    print(f"\none run {single:.2f}s; 20 concurrent {wall:.2f}s")
    for topic, output in zip(topics, outputs, strict=True):
        assert isinstance(output, dict) and output["task_count"] == 3, output
        assert all(topic in f["question"] for f in output["findings"])
        assert calls_of(fake_llm, topic) == ONE_RUN, topic
    per_replica = [
        len(picked_up(r)) - before for r, before in zip(aegra.replicas, taken, strict=True)
    ]
    assert sum(per_replica) == 21 and min(per_replica) > 0, per_replica
    assert wall < 0.5 * 20 * single


# --- one writer per thread -------------------------------------------------------------------
#
# Aegra 0.11 runs two runs of one thread at once (it stores multitask_strategy but never acts on
# it), and a replica whose lease expired while it was stalled keeps running beside the replica
# that took its run over (aegra issue 502, PR 547): it is only cancelled at its next heartbeat.
# The project's per-thread lock, which the graphs of langgraph_fanout/server/graphs.py take, must
# keep either from writing to a thread that another run is writing to.


def checkpoint_forks(cluster: AegraCluster, thread: str) -> list[str]:
    """Checkpoints of ``thread`` with two children or more: where two writers went apart."""
    with psycopg.connect(cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT parent_checkpoint_id FROM checkpoints WHERE thread_id = %s"
            " AND checkpoint_ns = '' AND parent_checkpoint_id IS NOT NULL"
            " GROUP BY parent_checkpoint_id HAVING count(*) > 1",
            (thread,),
        )
        return [row[0] for row in rows.fetchall()]


def span(fake: FakeLLM, topic: str) -> tuple[float, float]:
    """When the first LLM call of the run on ``topic`` started and its last one ended."""
    records = calls_on(fake, topic)
    return min(r["t_start"] for r in records), max(r["t_end"] for r in records)


def test_two_runs_on_one_thread_never_write_at_once(aegra: AegraCluster, fake_llm: FakeLLM) -> None:
    fake_llm.add_rules({"match": "Research question", "latency": 1.0})
    first, second = (get_sync_client(url=url) for url in aegra.urls)
    thread = first.threads.create()["thread_id"]
    runs = {
        "Same thread one": first.runs.create(
            thread, "research", input={"topic": "Same thread one"}
        ),
        "Same thread two": second.runs.create(
            thread, "research", input={"topic": "Same thread two"}
        ),
    }
    for run in runs.values():
        first.runs.join(thread, run["run_id"])

    assert checkpoint_forks(aegra, thread) == []
    assert {first.runs.get(thread, run["run_id"])["status"] for run in runs.values()} == {"success"}
    (_, end1), (start2, _) = sorted(span(fake_llm, topic) for topic in runs)
    assert end1 <= start2  # the second waited for the thread, then ran
    assert all(calls_of(fake_llm, topic) == ONE_RUN for topic in runs)


def test_a_replica_frozen_past_its_lease_never_writes_beside_its_successor(
    aegra: AegraCluster, fake_llm: FakeLLM
) -> None:
    topic = "Frozen replica"
    fake_llm.add_rules({"match": "Research question", "latency": 3.0, "times": 3})
    client = get_sync_client(url=aegra.urls[0])
    thread = client.threads.create()["thread_id"]
    run = client.runs.create(thread, "research", input={"topic": topic})["run_id"]
    wait_for_in_flight(fake_llm, 3)
    holder_pid = lease_holders(aegra)[run]
    (holder,) = [r for r in aegra.replicas if r.process.pid == holder_pid]
    (other,) = [r for r in aegra.replicas if r is not holder]

    holder.process.send_signal(signal.SIGSTOP)  # stalled past its lease: 10 s without a heartbeat
    try:
        wait_until(lambda: run in picked_up(other), "the other replica takes the run over")
    finally:
        holder.process.send_signal(signal.SIGCONT)
    observer = get_sync_client(url=other.url)
    observer.runs.join(thread, run)
    wait_until(lambda: run in finished_runs(holder), "the stalled replica's attempt ends")

    assert checkpoint_forks(aegra, thread) == []
    # The successor waited for the thread until the stalled attempt was cancelled, then ran.
    assert observer.runs.get(thread, run)["status"] == "success"
    state = observer.threads.get_state(thread)
    assert state["next"] == [] and state["values"]["task_count"] == 3
    # The stalled attempt was cut at most once, mid-call: at most one call repeated per role.
    calls = calls_of(fake_llm, topic)
    assert calls["plan"] == 1 and all(calls[role] <= 2 for role in calls), calls
    for role in calls:
        spans = sorted(
            (r["t_start"], r["t_end"])
            for r in calls_on(fake_llm, topic)
            if research_role(r) == role
        )
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), role


# --- a replica killed mid-run -----------------------------------------------------------------


def test_kill_9_of_a_replica_mid_run_every_run_finishes_on_the_other(
    aegra: AegraCluster, fake_llm: FakeLLM
) -> None:
    # The first 30 researcher calls (three per run) take 5 s: every run is mid-fan-out at the kill.
    fake_llm.add_rules({"match": "Research question", "latency": 5.0, "times": 30})
    clients = [get_sync_client(url=url) for url in aegra.urls]
    topics = [f"Kill test {i:02d}" for i in range(10)]
    runs: dict[str, tuple[str, str]] = {}  # topic -> (thread, run)
    for i, topic in enumerate(topics):
        client = clients[i % 2]
        thread = client.threads.create()["thread_id"]
        runs[topic] = (
            thread,
            client.runs.create(thread, "research", input={"topic": topic})["run_id"],
        )
    wait_for_in_flight(fake_llm, 30, timeout=60)

    holders = lease_holders(aegra)
    held = {
        replica.process.pid: [
            t for t, (_, run) in runs.items() if holders[run] == replica.process.pid
        ]
        for replica in aegra.replicas
    }
    victim = max(aegra.replicas, key=lambda r: len(held[r.process.pid]))
    (survivor,) = [r for r in aegra.replicas if r is not victim]
    killed = set(held[victim.process.pid])
    assert killed, held
    victim.stop(signal.SIGKILL)

    client = get_sync_client(url=survivor.url)
    for topic, (thread, run) in runs.items():
        output = client.runs.join(thread, run)
        assert client.runs.get(thread, run)["status"] == "success", (topic, output)
        assert output["task_count"] == 3 and len(output["findings"]) == 3, (topic, output)
        assert client.threads.get_state(thread)["next"] == []

    # Only the calls in flight at the killed replica ran again: its runs' three researchers.
    again = {"plan": 1, "q1": 2, "q2": 2, "q3": 2, "writer": 1}
    calls = {topic: calls_of(fake_llm, topic) for topic in topics}
    assert calls == {t: again if t in killed else ONE_RUN for t in topics}, (killed, calls)
    print(f"\nkilled replica held {len(killed)} of 10 runs; {len(fake_llm.log())} LLM calls for 50")
    assert len(fake_llm.log()) == 50 + 3 * len(killed)
