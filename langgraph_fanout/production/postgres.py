"""A throwaway PostgreSQL cluster on 127.0.0.1, for tests and benchmarks.

Uses the Debian ``postgresql`` package's binaries (``/usr/lib/postgresql/<version>/bin``).
initdb and pg_ctl refuse to run as root, so as root they run as user ``postgres``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

PG_USER = "postgres"
DATABASE = "fanout"
START_TIMEOUT = 30


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None if none is installed."""
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """``command`` run as user ``postgres`` when we are root, else as ourselves."""
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], timeout: float = START_TIMEOUT) -> None:
    result = subprocess.run(
        _as_postgres(command), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )


class PostgresCluster:
    """A cluster in ``root`` (``root/data``, log ``root/server.log``), served on 127.0.0.1."""

    def __init__(self, bindir: Path, root: Path, *, fsync: bool = True) -> None:
        self.bindir = bindir
        self.root = root.resolve()  # PostgreSQL resolves a relative socket dir from its data
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = free_port()
        options = f"-p {self.port} -c listen_addresses=127.0.0.1"
        options += f" -c unix_socket_directories={self.root}"
        if not fsync:
            options += " -c fsync=off -c full_page_writes=off"
        self.options = options

    @property
    def url(self) -> str:
        """The ``postgresql://`` URL of its database ``fanout``."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        """Start it (initdb first if it has no data; database ``fanout`` made if missing).

        Raises:
            RuntimeError: it did not start; the message holds its log.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
        try:
            if not (self.data / "PG_VERSION").exists():
                _run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER,
                      "-A", "trust", "-N"])  # fmt: skip
            _run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", self.options, "-w", "-t", str(START_TIMEOUT), "start"])  # fmt: skip
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            server_log = self.log.read_text(errors="replace") if self.log.exists() else "(none)"
            raise RuntimeError(
                f"PostgreSQL did not start: {exc}\nserver log:\n{server_log}"
            ) from None
        admin = f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (DATABASE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` (clients disconnected, clean) or ``immediate`` (as if it crashed)."""
        _run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop"])

    def running(self) -> bool:
        """Whether its server process runs (``pg_ctl status``)."""
        status = subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        return status.returncode == 0


@contextmanager
def postgres_cluster(
    bindir: Path, *, fsync: bool = True, data_dir: Path | None = None
) -> Iterator[PostgresCluster]:
    """A started cluster for the block.

    With ``data_dir`` the cluster lives there and is kept (made on first use, started again
    after); without, it lives in a temp dir and is removed with its data.
    """
    cluster = PostgresCluster(
        bindir, data_dir or Path(tempfile.mkdtemp(prefix="fanout-pg-")), fsync=fsync
    )
    try:
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop("immediate" if data_dir is None else "fast")
    finally:
        if data_dir is None:
            shutil.rmtree(cluster.root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Create database ``name`` (dropped first if it exists) in the cluster of ``url``; its URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
