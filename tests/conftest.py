"""Shared fixtures."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from langgraph_fanout.production.postgres import find_bindir, postgres_cluster
from langgraph_fanout.production.redis_server import find_redis_server, redis_server
from tests.aegra_cluster import AegraCluster, require_aegra, start_cluster
from tests.fake_llm import FakeLLM, start_fake_llm
from tests.requirements import unavailable

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.testing import WorkflowEnvironment

    from tests.langgraph_server import Server

# --- fake LLM -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLM]:
    """One fake OpenAI-compatible server process for the whole session."""
    with start_fake_llm() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    """The fake server, reset, with the OpenAI env vars pointing at it and tracing off.

    In-process runs use its shared URL (their models are cached across tests); the processes a
    test starts use the test's own (``FakeLLM.begin_test``).
    """
    fake_llm_server.begin_test()
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm_server.shared_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("FANOUT_MODEL", "openai:fake-model")
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return fake_llm_server


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the session: a database URL.

    Skips when the PostgreSQL binaries are missing; under CI that is a failure.
    """
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb)",
            install="apt-get install postgresql",
        )
    with postgres_cluster(bindir, fsync=False) as cluster:
        yield cluster.url


# --- Temporal -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server (in memory) for the session."""
    from temporalio.testing import WorkflowEnvironment

    from tests.temporal_cluster import temporal_binary

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        ui=False,
        # 5 s by default: once too short in a full run, right after the other tests ended
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    yield env
    await env.shutdown()


@pytest.fixture
def address(temporal: WorkflowEnvironment) -> str:
    """The session's Temporal server, as ``HOST:PORT``."""
    return str(temporal.client.service_client.config.target_host)


@pytest.fixture
def task_queue() -> str:
    """A queue of the test's own: workers of other tests never take its work."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(address: str, tmp_path: Path) -> Client:
    """A client with the project's data converter (its payload store in the test's folder)."""
    from langgraph_fanout.temporal.client import connect

    return await connect(address, db=str(tmp_path / "payloads.sqlite"))


# --- langgraph dev ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def langgraph_dev(
    fake_llm_server: FakeLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One ``langgraph dev`` process on SQLite for the session's server tests (never killed)."""
    from tests.langgraph_server import server_env, start_server

    workdir = tmp_path_factory.mktemp("langgraph-dev")
    running = start_server(workdir, server_env(fake_llm_server, workdir / "checkpoints.sqlite"))
    try:
        yield running
    finally:
        running.kill()


# --- Redis and Aegra ------------------------------------------------------------------------


@pytest.fixture
def traversable_tmp() -> Iterator[Path]:
    """A temp dir that user postgres may pass through (pytest's own are the owner's only)."""
    path = Path(tempfile.mkdtemp(prefix="fanout-production-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway Redis on 127.0.0.1 for the session (skips without redis-server; CI fails)."""
    binary = find_redis_server()
    if binary is None:
        unavailable("redis-server is not installed", install="apt-get install redis-server")
    assert binary is not None
    with redis_server(binary) as redis:
        yield redis.url


@pytest.fixture(scope="session")
def aegra_cluster(
    fake_llm_server: FakeLLM,
    postgres_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AegraCluster]:
    """Two Aegra replicas on one database and one Redis, shared by the session's tests.

    A test that kills a replica leaves it dead; ``aegra`` starts a new one for the next test
    that needs two.
    """
    require_aegra()
    cluster = start_cluster(
        fake_llm_server, postgres_url, redis_url, tmp_path_factory.mktemp("aegra"), replicas=2
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def aegra(aegra_cluster: AegraCluster, fake_llm: FakeLLM) -> AegraCluster:
    """The session's Aegra replicas, two of them alive, the fake LLM reset."""
    aegra_cluster.replace_dead()
    return aegra_cluster


# --- parallel runs (pytest-xdist) ------------------------------------------------------------


FIRST = ("aegra", "temporal", "server", "postgres")
"""Markers of tests that start servers: the minute-long tests are among them."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group and order the tests for ``make test``'s workers (``--dist loadgroup``).

    Each embedded-model module is one xdist group unless it names its own: its module fixture
    runs the model for minutes, once and not once per worker, while other modules run the
    model on other workers. xdist hands out the groups first, largest first, then the
    tests in this order: the modules that start servers come first, so that a minute-long
    test is not the last one handed out, with the other workers idle until it ends.
    """
    first = set()
    for item in items:
        if item.get_closest_marker("local_model") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(f"local_model:{item.path.stem}"))
        if any(item.get_closest_marker(name) for name in FIRST):
            first.add(item.path)
    items.sort(key=lambda item: item.path not in first)  # stable: each module stays whole
