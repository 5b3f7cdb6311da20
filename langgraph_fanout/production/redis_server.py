"""A Redis server on 127.0.0.1 (Debian's ``redis-server``): Aegra's job queue and broker."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph_fanout.production.postgres import free_port
from langgraph_fanout.production.processes import stop

START_TIMEOUT = 10.0


def find_redis_server() -> str | None:
    """The ``redis-server`` binary, or None if it is not installed."""
    return shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")


@contextmanager
def redis_server(binary: str, data_dir: Path | None = None) -> Iterator[str]:
    """Run ``redis-server`` for the block; yield its ``redis://`` URL.

    With ``data_dir`` its append-only file is kept there (the queue survives a restart);
    without, it runs in a temp dir, in memory only, and the dir is removed.
    """
    root = data_dir or Path(tempfile.mkdtemp(prefix="fanout-redis-"))
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    persistence = ["--appendonly", "yes"] if data_dir else ["--appendonly", "no", "--save", ""]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    command += [*persistence, "--logfile", str(root / "redis.log")]
    process = subprocess.Popen(  # a session of its own: a Ctrl-C is ours to pass on, in order
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for_pong(port, process, root / "redis.log")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)
        if data_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def _wait_for_pong(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the server answers PING; raise with its log if it exits or never does."""
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)  # or still loading its data: nothing to wait on but the port
    output = log.read_text(errors="replace") if log.exists() else "(no log)"
    raise RuntimeError(f"redis-server did not answer PING on port {port}:\n{output}")
