"""Aegra replicas for the tests: the production virtualenv's server on the suite's services.

The replicas share a database of their own in the suite's PostgreSQL cluster and one Redis,
and serve ``aegra.json``'s graphs with the fake LLM as the model, in a working directory of
their own. Leases are short so a killed replica's runs move within seconds: a lease of 10 s
renewed every 2 s (five heartbeats may be late on a loaded machine before a live replica loses
its run), and the reaper looking every second.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph_sdk.client import SyncLangGraphClient

from langgraph_fanout.production.postgres import create_database, free_port
from langgraph_fanout.production.redis_server import find_redis_server
from langgraph_fanout.production.replicas import (
    PYTHON,
    Replica,
    migrate,
    replica_env,
    start_replicas,
)
from tests.fake_llm import FakeLLM
from tests.requirements import unavailable

LEASE = {
    "LEASE_DURATION_SECONDS": "10",
    "HEARTBEAT_INTERVAL_SECONDS": "2",
    "REAPER_INTERVAL_SECONDS": "1",
}
"""Aegra's lease settings in the tests (defaults 30 / 10 / 15 s)."""


def require_aegra() -> None:
    """Skip (fail under CI) unless the production virtualenv and redis-server are installed."""
    if not PYTHON.exists() or not (PYTHON.parent / "aegra").exists():
        unavailable(
            "the production virtualenv (.venv-production, Aegra on Python >= 3.12) is missing",
            install="`make production-install` (it needs a Python >= 3.12 on the machine)",
        )
    if find_redis_server() is None:
        unavailable("redis-server is not installed", install="apt-get install redis-server")


def offline_env(fake: FakeLLM) -> dict[str, str]:
    """This environment without tracing, model or database settings, the fake LLM as model."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "OPENAI_", "FANOUT_", "REDIS_"))
        and k != "DATABASE_URL"
    }
    env.update(
        LANGSMITH_TRACING="false",
        OPENAI_BASE_URL=fake.shared_url,
        OPENAI_API_KEY="test-key",
        FANOUT_MODEL="openai:fake-model",
    )
    return env


@dataclass
class AegraCluster:
    """Replicas on one database and one Redis."""

    database_url: str
    redis_url: str
    env: dict[str, str]
    workdir: Path
    replicas: list[Replica] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        """The replicas' base URLs."""
        return [replica.url for replica in self.replicas]

    def start(self, count: int) -> None:
        """Start ``count`` more replicas, all at once."""
        ports = [free_port() for _ in range(count)]
        self.replicas += start_replicas(self.env, ports, cwd=self.workdir, log_dir=self.workdir)

    def replace_dead(self) -> None:
        """Start a new replica for each one that exited (a test killed it)."""
        dead = [replica for replica in self.replicas if not replica.alive()]
        for replica in dead:
            replica.stop()
            self.replicas.remove(replica)
        if dead:
            self.start(len(dead))

    def stop(self) -> None:
        """Stop every replica (in parallel: each drains its runs)."""
        with ThreadPoolExecutor() as pool:
            list(pool.map(Replica.stop, self.replicas))


def start_cluster(
    fake: FakeLLM, postgres_url: str, redis_url: str, workdir: Path, replicas: int, **settings: str
) -> AegraCluster:
    """A database of its own, migrated, and ``replicas`` replicas on it."""
    database_url = create_database(postgres_url, f"aegra_{workdir.name.replace('-', '_')}")
    env = replica_env(database_url, redis_url, offline_env(fake), **{**LEASE, **settings})
    migrate(env, workdir)
    cluster = AegraCluster(database_url, redis_url, env, workdir)
    cluster.start(replicas)
    return cluster


def resume_thread(client: SyncLangGraphClient, thread: str, graph: str) -> Any:
    """Finish a thread cut short, as ``runs.wait(thread, graph, input=None)`` does elsewhere.

    Aegra refuses a run with neither input, command nor checkpoint (422). A checkpoint of the
    root namespace and no id resumes from the latest checkpoint, keeping finished workers'
    results; the latest checkpoint's *id* would replay it, running them again.
    """
    return client.runs.wait(thread, graph, input=None, checkpoint={"checkpoint_ns": ""})
