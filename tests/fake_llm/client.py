"""Start the fake LLM server (``tests.fake_llm.server``) in a subprocess; drive its control API."""

from __future__ import annotations

import selectors
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class FakeLLM:
    """Synchronous handle on a running fake LLM server."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.url = f"http://{host}:{port}"
        self.shared_url = self.base_url = f"{self.url}/v1"
        self._http = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    def reset(self) -> None:
        """Clear rules, log and counters; restore the default latency and item count."""
        self._post("/_control/reset", {})

    def begin_test(self) -> None:
        """Reset, and give ``base_url`` a prefix of this test's own.

        Processes a test starts use ``base_url``; one left running by an earlier test gets
        HTTP 410 from then on and never shows in this test's log. Servers shared by many tests
        use ``shared_url``.
        """
        epoch = uuid.uuid4().hex[:12]
        self._post("/_control/reset", {"epoch": epoch})
        self.base_url = f"{self.url}/t/{epoch}/v1"

    def configure(self, *, latency: float | None = None, default_items: int | None = None) -> None:
        """Set the global latency (seconds) and/or generated array length."""
        body = {"latency": latency, "default_items": default_items}
        self._post("/_control/config", {k: v for k, v in body.items() if v is not None})

    def add_rules(self, *rules: dict[str, Any]) -> None:
        """Append rules; the first non-exhausted matching rule decides a reply."""
        self._post("/_control/rules", {"rules": list(rules)})

    def release(self) -> None:
        """Answer the requests ``hold`` rules keep waiting (and any such request from now on)."""
        self._post("/_control/release", {})

    def log(self) -> list[dict[str, Any]]:
        """Request records in arrival order."""
        return self._get("/_control/log")

    def stats(self) -> dict[str, Any]:
        """``requests``, ``in_flight``, ``peak_in_flight`` and the server's ``cpu_s`` so far."""
        return self._get("/_control/stats")

    def requests_matching(
        self, substring: str | None = None, schema: str | None = None
    ) -> list[dict[str, Any]]:
        """Logged requests whose last user or system message contains ``substring``."""
        return [
            record
            for record in self.log()
            if (schema is None or record["schema"] == schema)
            and (
                substring is None
                or substring in record["last_user"]
                or substring in (record["system"] or "")
            )
        ]

    def close(self) -> None:
        """Close the control connection (the server keeps running)."""
        self._http.close()

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _get(self, path: str) -> Any:
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._http.post(path, json=body)
        if response.status_code == 400:
            raise ValueError(f"fake LLM rejected {path}: {response.json()['error']}")
        response.raise_for_status()
        return response.json()


@contextmanager
def start_fake_llm(latency: float = 0.0) -> Iterator[FakeLLM]:
    """Run ``python -m tests.fake_llm`` for the duration of the block."""
    command = [sys.executable, "-m", "tests.fake_llm", "--host", HOST, "--port", "0"]
    command += ["--latency", str(latency)]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            port = _read_port(process, stderr)
            with FakeLLM(port) as fake:
                yield fake
        finally:
            _stop(process)


def _read_port(process: subprocess.Popen[str], stderr: IO[bytes]) -> int:
    """Wait for the server's ``FAKE_LLM_PORT=<port>`` line."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if selector.select(remaining):
                line = process.stdout.readline()
                if line.startswith("FAKE_LLM_PORT="):
                    return int(line.split("=", 1)[1])
                if not line:  # EOF: the server exited
                    break
    stderr.seek(0)
    output = stderr.read().decode(errors="replace")
    raise RuntimeError(
        f"fake LLM did not start within {START_TIMEOUT:g}s "
        f"(exit code {process.poll()}); stderr:\n{output}"
    )


def _stop(process: subprocess.Popen[str]) -> None:
    """Terminate the server, killing it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
