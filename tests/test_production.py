"""The production launcher keeps Aegra, PostgreSQL and Redis up; Redis outages lose no run.

What its documented command does as written is in tests/test_aegra.py; here: bad settings are
one line, a dead service is started again, and a client retrying a create through a Redis
outage gets one run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import InternalServerError

from langgraph_fanout.api_client import create_run_once
from langgraph_fanout.production.postgres import free_port
from langgraph_fanout.production.redis_server import RedisServer, find_redis_server
from langgraph_fanout.production.replicas import PYTHON, ROOT, Replica
from tests.aegra_cluster import LEASE, AegraCluster, offline_env, require_aegra, start_cluster
from tests.fake_llm import FakeLLM
from tests.production_launcher import launch
from tests.test_database_outages import calls_on, check_report, hold_researchers
from tests.test_durability import wait_for_in_flight

pytestmark = [pytest.mark.aegra, pytest.mark.timeout(300)]

LAUNCHER = [str(PYTHON), "-m", "langgraph_fanout.production"]
ONE_RUN = {"plan": 1, "q1": 1, "q2": 1, "q3": 1, "q4": 1, "writer": 1}


# --- settings -------------------------------------------------------------------------------

BAD_SETTINGS = {
    "database-port": ({"DATABASE_URL": "postgresql://u:S3CRET@127.0.0.1:port/db"}, "$DATABASE_URL"),
    "database-bracket": ({"DATABASE_URL": "postgresql://u:S3CRET@[::1/db"}, "$DATABASE_URL"),
    "database-unreachable": (
        {"DATABASE_URL": "postgresql://u:S3CRET@127.0.0.1:1/db"},
        "$DATABASE_URL (postgresql://u:***@127.0.0.1:1/db) cannot be reached",
    ),
    "database-not-postgres": ({"DATABASE_URL": "mysql://u:S3CRET@h/db"}, "must be a postgresql"),
    "redis-port": ({"REDIS_URL": "redis://:S3CRET@127.0.0.1:port/0"}, "$REDIS_URL"),
    "redis-unreachable": (
        {"REDIS_URL": "redis://:S3CRET@127.0.0.1:1/0"},
        "$REDIS_URL (redis://:***@127.0.0.1:1/0) cannot be reached",
    ),
}


@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_bad_url_is_one_line_without_the_password_and_nothing_starts(
    setting: str, postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    require_aegra()
    settings, reason = BAD_SETTINGS[setting]
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url} | settings
    env = {**os.environ, **env, "XDG_DATA_HOME": str(tmp_path / "data")}

    done = subprocess.run(
        LAUNCHER, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and reason in line, line
    assert "S3CRET" not in line
    assert not (tmp_path / "data").exists()  # no PostgreSQL, Redis or migration started


@pytest.mark.xdist_group("aegra")  # the session's replicas' worker: not one more cluster
@pytest.mark.parametrize(
    "settings",
    [
        {"FANOUT_DB": "postgresql://u:S3CRET@127.0.0.1:port/db"},
        {"FANOUT_DB": "/tmp/runs.sqlite"},
        {"DATABASE_URL": "postgresql://u:S3CRET@127.0.0.1:1/db"},
        {"REDIS_URL": "redis://:S3CRET@127.0.0.1:notaport/0"},
    ],
    ids=["fanout-db-port", "fanout-db-sqlite", "database-unreachable", "redis-port"],
)
def test_a_replica_started_alone_with_a_bad_url_stops_with_one_line(
    aegra_cluster: AegraCluster, settings: dict[str, str], tmp_path: Path
) -> None:
    replica = Replica(
        {**aegra_cluster.env, **settings}, free_port(), cwd=tmp_path, log_dir=tmp_path
    )
    replica.spawn()
    try:
        code = replica.process.wait(timeout=60)
    finally:
        replica.stop()
    log = (tmp_path / f"replica-{replica.port}.log").read_text()
    assert code == 2, log
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in log and "S3CRET" not in log, log
    assert next(iter(settings)) in errors[0]


# --- services that die ----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def named(pids: list[int], name: str) -> int:
    """The one process of ``pids`` whose command is ``name``."""
    (found,) = [pid for pid in pids if Path(f"/proc/{pid}/comm").read_text().strip() == name]
    return found


@pytest.mark.timeout(420)
def test_the_launcher_starts_again_what_dies_and_the_runs_in_flight_finish(
    fake_llm: FakeLLM, traversable_tmp: Path, tmp_path: Path
) -> None:
    """Redis, then a replica, then PostgreSQL killed -9 while four runs have researchers in
    flight: each is started again, every run ends ``success`` with its report."""
    require_aegra()
    port = free_port()
    env = offline_env(fake_llm) | LEASE
    command = " ".join([*LAUNCHER, "--port", str(port), "--data", str(traversable_tmp)])
    launcher = launch(command, env, tmp_path / "launcher.log")
    try:
        pid = launcher.wait_serving()
        topics = [f"supervised-{n}" for n in range(4)]
        for topic in topics:
            fake_llm.add_rules(*hold_researchers(topic))
        runs = []
        for n, topic in enumerate(topics):
            client = get_sync_client(url=f"http://127.0.0.1:{port + n % 2}")
            thread = client.threads.create()["thread_id"]
            runs.append(
                (client, thread, client.runs.create(thread, "research", input={"topic": topic}))
            )
        wait_for_in_flight(fake_llm, 2 * len(topics))

        os.kill(named(children(pid), "redis-server"), signal.SIGKILL)
        launcher.wait_for("Redis is up again")
        url, replica = re.findall(r"replica (\S+) \(pid (\d+)\)", launcher.output())[0]
        os.kill(int(replica), signal.SIGKILL)
        launcher.wait_for(f"replica {url} is up again", timeout=120)
        postmaster = traversable_tmp / "postgres" / "data" / "postmaster.pid"
        os.kill(int(postmaster.read_text().split()[0]), signal.SIGKILL)
        launcher.wait_for("PostgreSQL is up again")
        fake_llm.release()
        statuses = []
        for client, thread, run in runs:
            client.runs.join(thread, run["run_id"])
            statuses.append(client.runs.get(thread, run["run_id"])["status"])
            check_report(client.threads.get_state(thread)["values"], topics[len(statuses) - 1])
        launcher.ctrl_c()
        code = launcher.exit_code()
    finally:
        launcher.kill()

    log = launcher.output()
    assert statuses == ["success"] * len(topics), log[-5000:]
    for service in ("Redis", f"replica {url}", "PostgreSQL"):
        assert f"{service} is down; starting it again in 1 s" in log, log[-5000:]
    assert code == 0, log[-3000:]
    for topic in topics:  # the killed replica's runs repeat only what was in flight
        calls = calls_on(fake_llm, topic)
        assert calls.keys() == ONE_RUN.keys() and max(calls.values()) <= 2, (topic, calls)


# --- Redis outages ----------------------------------------------------------------------------

REDIS_DOWN = 10.0


@pytest.fixture
def cluster_on_own_redis(
    fake_llm: FakeLLM, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[AegraCluster, RedisServer]]:
    """Two replicas on a Redis of the test's own (kept on disk, so it can be killed and back)."""
    require_aegra()
    binary = find_redis_server()
    assert binary is not None
    redis = RedisServer(binary, tmp_path / "redis", persist=True)
    redis.start()
    workdir = tmp_path / "aegra"
    workdir.mkdir()
    # A run stored while Redis was down is queued by the reaper after this many seconds.
    cluster = start_cluster(
        fake_llm, postgres_url, redis.url, workdir, replicas=2, STUCK_PENDING_THRESHOLD_SECONDS="3"
    )
    try:
        yield cluster, redis
    finally:
        cluster.stop()
        redis.stop()


def test_a_create_retried_through_a_redis_outage_makes_one_run(
    fake_llm: FakeLLM, cluster_on_own_redis: tuple[AegraCluster, RedisServer]
) -> None:
    """Redis killed for 10 s: runs in flight finish; a create answered 500 was stored anyway
    (a plain retry makes a second run); ``create_run_once`` retried through it makes one."""
    cluster, redis = cluster_on_own_redis
    client = get_sync_client(url=cluster.urls[0])
    in_flight = [f"in-flight-{n}" for n in range(2)]
    for topic in in_flight:
        fake_llm.add_rules(*hold_researchers(topic))
    fake_llm.add_rules({"match": "Topic: retried once", "schema": "ResearchPlan", "items": 4})
    runs = []
    for topic in in_flight:
        thread = client.threads.create()["thread_id"]
        runs.append((thread, client.runs.create(thread, "research", input={"topic": topic})))
    wait_for_in_flight(fake_llm, 2 * len(in_flight))

    assert redis.process is not None
    redis.process.kill()
    redis.process.wait()
    failed_thread = client.threads.create()["thread_id"]
    with pytest.raises((InternalServerError, httpx.TransportError)):  # 500, or the line cut
        client.runs.create(failed_thread, "research", input={"topic": "stored anyway"})
    # A new client: the server cut the old one's connection (uvicorn, after Aegra's error).
    stored = get_sync_client(url=cluster.urls[0]).runs.list(failed_thread)
    once_thread, request = str(uuid.uuid4()), str(uuid.uuid4())
    created: list[dict[str, Any]] = []
    retrying = threading.Thread(
        target=lambda: created.append(
            asyncio.run(
                create_run_once(
                    get_client(url=cluster.urls[1]),
                    once_thread,
                    "research",
                    request_id=request,
                    input={"topic": "retried once"},
                )
            )
        )
    )
    retrying.start()
    time.sleep(REDIS_DOWN)
    redis.start()
    fake_llm.release()
    retrying.join(timeout=120)

    assert len(stored) == 1  # the failed create was stored: a plain retry would make two
    assert len(created) == 1 and created[0]["thread_id"] == once_thread
    for thread, run in runs:
        client.runs.join(thread, run["run_id"])
        assert client.runs.get(thread, run["run_id"])["status"] == "success"
    once = client.runs.list(once_thread)
    assert [r["run_id"] for r in once] == [created[0]["run_id"]]
    client.runs.join(once_thread, created[0]["run_id"])
    check_report(client.threads.get_state(once_thread)["values"], "retried once")
    assert calls_on(fake_llm, "retried once") == ONE_RUN
    for topic in in_flight:
        assert calls_on(fake_llm, topic) == ONE_RUN, topic
