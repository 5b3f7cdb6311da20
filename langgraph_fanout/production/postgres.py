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


@contextmanager
def postgres_cluster(
    bindir: Path, *, fsync: bool = True, data_dir: Path | None = None
) -> Iterator[str]:
    """Start a cluster; yield a ``postgresql://`` URL of its database ``fanout``.

    With ``data_dir`` the cluster lives there and is kept (made on first use, started again
    after); without, it lives in a temp dir and is removed with its data.
    """
    root = data_dir or Path(tempfile.mkdtemp(prefix="fanout-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root}"
    if not fsync:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        _start(bindir, data, log, options)
        try:
            admin = f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                query = "SELECT 1 FROM pg_database WHERE datname = %s"
                if conn.execute(query, (DATABASE,)).fetchone() is None:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
            yield f"postgresql://{PG_USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run([*pg_ctl, "-m", "immediate" if data_dir is None else "fast", "stop"])
    finally:
        if data_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Create database ``name`` (dropped first if it exists) in the cluster of ``url``; its URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _start(bindir: Path, data: Path, log: Path, options: str) -> None:
    """Start the cluster in ``data`` (initdb first if it has none); raise with its log if not."""
    try:
        if not (data / "PG_VERSION").exists():
            _run([str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-N"])
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
              "-t", str(START_TIMEOUT), "start"])  # fmt: skip
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        server_log = log.read_text(errors="replace") if log.exists() else "(none)"
        raise RuntimeError(f"PostgreSQL did not start: {exc}\nserver log:\n{server_log}") from None
