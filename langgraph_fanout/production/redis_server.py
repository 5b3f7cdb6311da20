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


class RedisServer:
    """``redis-server`` on a port of its own, its files in ``root`` (kept there if ``persist``).

    Started again after a crash, it keeps its port (its URL) and, if ``persist``, its queue.
    """

    def __init__(self, binary: str, root: Path, *, persist: bool) -> None:
        self.binary = binary
        self.root = root.resolve()
        self.persist = persist
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its ``redis://`` URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it; return once it answers PING.

        Raises:
            RuntimeError: it exited or did not answer; the message holds its log.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes"] if self.persist else ["--appendonly", "no", "--save", ""]
        )
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += [
            "--dir",
            str(self.root),
            *persistence,
            "--logfile",
            str(self.root / "redis.log"),
        ]
        self.process = subprocess.Popen(  # a session of its own: a Ctrl-C is ours to pass on
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_for_pong()

    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop it (SIGTERM: it saves its queue), if it runs."""
        if self.process is not None:
            stop(self.process)

    def _wait_for_pong(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)  # or still loading its data: nothing to wait on but the port
        log = self.root / "redis.log"
        output = log.read_text(errors="replace") if log.exists() else "(no log)"
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{output}")


@contextmanager
def redis_server(binary: str, data_dir: Path | None = None) -> Iterator[RedisServer]:
    """A started Redis for the block.

    With ``data_dir`` its append-only file is kept there (the queue survives a restart);
    without, it runs in a temp dir, in memory only, and the dir is removed.
    """
    server = RedisServer(
        binary, data_dir or Path(tempfile.mkdtemp(prefix="fanout-redis-")), persist=bool(data_dir)
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if data_dir is None:
            shutil.rmtree(server.root, ignore_errors=True)
