"""Aegra replicas serving the graphs of ``aegra.json`` from one PostgreSQL and one Redis.

Each replica is one uvicorn process serving ``aegra_api.main:app`` from the production
virtualenv, what ``aegra serve`` runs (as a child process, which would make a kill miss the
server); ``AEGRA_CONFIG`` names the config. With the Redis broker on, a run is queued in
Redis and taken by whichever replica's worker pops it first; the worker holds a lease on the
run in PostgreSQL and renews it every heartbeat, and when a replica dies its runs are queued
again once their leases expire (``LEASE_DURATION_SECONDS``, checked every
``REAPER_INTERVAL_SECONDS``).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.persistence.urls import scrub
from langgraph_fanout.production.processes import stop

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-production"
AEGRA = VENV / "bin" / "aegra"
PYTHON = VENV / "bin" / "python"
CONFIG = ROOT / "aegra.json"
START_TIMEOUT = 120.0


def replica_env(
    database_url: str, redis_url: str, base: Mapping[str, str], **settings: str
) -> dict[str, str]:
    """The environment of a replica: ``base`` plus the shared database, Redis and ``settings``.

    ``FANOUT_DB`` is the same database, so the project's per-thread lock is one lock across
    replicas. Migrations are left to :func:`migrate`, run once before the replicas start. Logs
    are JSON lines (``ENV_MODE=PRODUCTION``).
    """
    env = dict(base)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_BROKER_ENABLED="true",
        RUN_MIGRATIONS_ON_STARTUP="false",
        FANOUT_DB=database_url,
        ENV_MODE="PRODUCTION",
    )
    env.update(settings)
    return env


def migrate(env: Mapping[str, str], cwd: Path) -> None:
    """Create or upgrade Aegra's tables (``aegra db upgrade``), then the checkpoint tables.

    The checkpoint tables are set up here, under the project's set-up lock
    (``persistence/batched_postgres.py``), so that replicas starting together find them made:
    Aegra sets them up at start without a lock, and two set-ups of new tables collide.

    Raises:
        RuntimeError: the upgrade failed; the message holds its output, passwords hidden.
    """
    done = subprocess.run(
        [str(AEGRA), "db", "upgrade"],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        output = scrub_lines(done.stdout + done.stderr, env["DATABASE_URL"])
        raise RuntimeError(f"aegra db upgrade exited {done.returncode}:\n{output}")
    asyncio.run(_set_up_checkpoints(env["DATABASE_URL"]))


async def _set_up_checkpoints(url: str) -> None:
    async with aopen_checkpointer(url):
        pass


def scrub_lines(text: str, url: str) -> str:
    """``text`` with ``url``'s passwords hidden, line by line (the lines kept)."""
    return "\n".join(scrub(line, url) for line in text.splitlines())


@dataclass
class Replica:
    """One replica: an Aegra server on ``port``, started again there after a crash."""

    env: Mapping[str, str]
    port: int
    host: str = "127.0.0.1"
    cwd: Path = ROOT
    log_dir: Path | None = None
    """Where it logs (``replica-<port>.log``); None: to this terminal."""
    process: subprocess.Popen[bytes] = field(init=False)
    log: IO[bytes] | None = field(init=False, default=None)

    @property
    def url(self) -> str:
        """Its base URL."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def spawn(self) -> None:
        """Start its process (``aegra_api.main:app`` under uvicorn), without waiting."""
        if self.log_dir is not None and self.log is None:
            self.log = (self.log_dir / f"replica-{self.port}.log").open("a+b")
        command = [str(PYTHON), "-m", "uvicorn", "aegra_api.main:app"]
        command += ["--host", self.host, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            cwd=self.cwd,
            env={**self.env, "AEGRA_CONFIG": str(CONFIG)},
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=None if self.log is None else subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        """Start it and return once it is healthy.

        Raises:
            RuntimeError: it exited or did not become healthy in time (it is stopped).
        """
        self.spawn()
        try:
            _wait_until_healthy(self)
        except BaseException:
            stop(self.process, signal.SIGKILL)
            raise

    def output(self) -> str:
        """What the replica printed so far (empty when it prints to the terminal)."""
        if self.log is None:
            return ""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def alive(self) -> bool:
        """Whether its process is still running."""
        return self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` to the replica and reap it (SIGKILL if it lingers); close its log."""
        stop(self.process, sig)
        if self.log is not None:
            self.log.close()
            self.log = None


def start_replicas(
    env: Mapping[str, str],
    ports: list[int],
    *,
    host: str = "127.0.0.1",
    cwd: Path = ROOT,
    log_dir: Path | None = None,
) -> list[Replica]:
    """Start one replica per port and return when every one is healthy.

    The first starts alone, the others together once it serves: Aegra 0.11 creates each
    graph's default assistant at start-up by a read-then-insert, and two replicas starting
    together on a new database both insert, the second failing (``assistant_pkey``) and exiting.
    Replica ``i`` logs to ``log_dir/replica-<port>.log``, or to this terminal without a
    ``log_dir``.

    Raises:
        RuntimeError: a replica exited or did not answer ``/health`` in time (all are stopped).
    """
    replicas = [Replica(env, port, host, cwd, log_dir) for port in ports]
    try:
        for batch in (replicas[:1], replicas[1:]):
            for replica in batch:
                replica.spawn()
            for replica in batch:
                _wait_until_healthy(replica)
    except BaseException:
        for replica in replicas:
            if hasattr(replica, "process"):
                replica.stop(signal.SIGKILL)
        raise
    return replicas


def _wait_until_healthy(replica: Replica) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while replica.alive() and time.monotonic() < deadline:
            try:
                if http.get(f"{replica.url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # not listening yet: nothing to wait on but the port
    raise RuntimeError(
        f"Aegra replica {replica.url} did not become healthy within {START_TIMEOUT:g}s "
        f"(exit code {replica.process.poll()}); its output:\n{replica.output()[-5000:]}"
    )
