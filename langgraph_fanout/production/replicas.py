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

import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

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
    """Create or upgrade Aegra's tables (``aegra db upgrade``).

    Raises:
        RuntimeError: the upgrade failed; the message holds its output.
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
        output = done.stdout + done.stderr
        raise RuntimeError(f"aegra db upgrade exited {done.returncode}:\n{output}")


@dataclass
class Replica:
    """One running replica."""

    process: subprocess.Popen[bytes]
    url: str
    log: IO[bytes] | None

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
    replicas: list[Replica] = []
    try:
        for batch in (ports[:1], ports[1:]):
            started = [_spawn(env, port, host, cwd, log_dir) for port in batch]
            replicas += started
            for replica in started:
                _wait_until_healthy(replica)
    except BaseException:
        for replica in replicas:
            replica.stop(signal.SIGKILL)
        raise
    return replicas


def _spawn(
    env: Mapping[str, str], port: int, host: str, cwd: Path, log_dir: Path | None
) -> Replica:
    log = None if log_dir is None else (log_dir / f"replica-{port}.log").open("w+b")
    command = [str(PYTHON), "-m", "uvicorn", "aegra_api.main:app"]
    command += ["--host", host, "--port", str(port)]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**env, "AEGRA_CONFIG": str(CONFIG)},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=None if log is None else subprocess.STDOUT,
        start_new_session=True,
    )
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    return Replica(process, f"http://{url_host}:{port}", log)


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
