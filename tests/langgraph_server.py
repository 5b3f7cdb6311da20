"""A real ``langgraph dev`` process for the tests, on a free port in its own folder.

Its config is derived from the project's ``langgraph.json`` (same graphs, descriptions and
checkpointer; paths made absolute) and its model is the suite's fake LLM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient, SyncLangGraphClient

from langgraph_fanout.production.postgres import free_port
from tests.fake_llm import FakeLLM

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG = PROJECT_ROOT / "langgraph.json"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def server_config(workdir: Path, config: dict[str, Any] | None = None) -> Path:
    """``langgraph.json`` (or ``config``) with absolute paths, written into ``workdir``."""
    config = json.loads(CONFIG.read_text()) if config is None else config
    for spec in config["graphs"].values():
        spec["path"] = str(PROJECT_ROOT / spec["path"])
    config["checkpointer"]["path"] = str(PROJECT_ROOT / config["checkpointer"]["path"])
    config["dependencies"] = [str(PROJECT_ROOT)]
    path = workdir / "langgraph.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def server_env(fake: FakeLLM, db: Path | str) -> dict[str, str]:
    """The environment of a server: offline, untraced, the fake LLM, the given database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "OPENAI_", "FANOUT_"))
    }
    env.update(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="1",
        LANGSMITH_TRACING="false",
        OPENAI_BASE_URL=fake.shared_url,
        OPENAI_API_KEY="test-key",
        FANOUT_MODEL="openai:fake-model",
        FANOUT_DB=str(db),
    )
    return env


@dataclass
class Server:
    """A running ``langgraph dev`` process."""

    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log: IO[bytes]

    def output(self) -> str:
        """Everything the server printed so far."""
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def sync_client(self) -> SyncLangGraphClient:
        return get_sync_client(url=self.url)

    def client(self) -> LangGraphClient:
        return get_client(url=self.url)

    def kill(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` to the server's process group; SIGKILL it if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def dev_command(
    workdir: Path, port: int, jobs: int = 10, config: dict[str, Any] | None = None
) -> list[str]:
    """The ``langgraph dev`` command line of a server in ``workdir`` on ``port``."""
    path = server_config(workdir, config)
    command = [sys.executable, "-m", "langgraph_cli", "dev", "--config", str(path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"]
    return [*command, "--n-jobs-per-worker", str(jobs)]


def start_server(
    workdir: Path, env: dict[str, str], jobs: int = 10, config: dict[str, Any] | None = None
) -> Server:
    """Start ``langgraph dev`` (``jobs`` runs at once) in ``workdir``; return once ``/ok`` does.

    ``config``: the server's ``langgraph.json`` (default: the project's).
    """
    port = free_port()
    command = dev_command(workdir, port, jobs, config)
    log = (workdir / f"server-{port}.log").open("w+b")
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(process, f"http://127.0.0.1:{port}", workdir, log)
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if http.get(f"{server.url}/ok").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    code = process.poll()
    server.kill(signal.SIGKILL)
    raise RuntimeError(
        f"`langgraph dev` did not answer /ok on {server.url} within {START_TIMEOUT:g}s "
        f"(exit code {code}); its output:\n{server.output()}"
    )
