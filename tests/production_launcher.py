"""``make serve-production`` for the tests: run in a terminal of its own, its output kept.

The launcher takes Ctrl-C from its terminal (``langgraph_fanout/production/terminal.py``), so
it runs under a real pseudo-terminal here; a thread reads everything it prints into a file (a
terminal nobody reads fills up, and the replicas writing to it would stop).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"serving; Ctrl-C or `kill (\d+)`")


@dataclass
class Launcher:
    """A ``make serve-production`` (or other command line) running in a pseudo-terminal."""

    child: pexpect.spawn
    log: Path
    reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with self.log.open("a") as out:
            while True:
                try:
                    out.write(self.child.read_nonblocking(65536, timeout=1))
                    out.flush()
                except pexpect.TIMEOUT:
                    continue
                except pexpect.EOF:
                    return

    def output(self) -> str:
        """What it printed so far."""
        return self.log.read_text(errors="replace")

    def wait_serving(self, timeout: float = 300.0) -> int:
        """Wait until it serves; the launcher's pid (its ``serving`` line names it)."""
        deadline = time.monotonic() + timeout
        while not (found := SERVING.search(self.output())):
            assert self.child.isalive(), f"it exited:\n{self.output()[-5000:]}"
            assert time.monotonic() < deadline, f"not serving:\n{self.output()[-5000:]}"
            time.sleep(0.2)
        return int(found[1])

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Wait until it printed ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert time.monotonic() < deadline, f"no {text!r}:\n{self.output()[-5000:]}"
            time.sleep(0.2)

    def ctrl_c(self) -> None:
        """Press Ctrl-C in its terminal."""
        self.child.sendintr()

    def exit_code(self, timeout: float = 120.0) -> int:
        """Wait for it to end; its exit status (128 + the signal if one killed it)."""
        deadline = time.monotonic() + timeout
        while self.child.isalive():
            assert time.monotonic() < deadline, f"still running:\n{self.output()[-3000:]}"
            time.sleep(0.2)
        self.reader.join(timeout=10)
        self.child.close()
        status = self.child.exitstatus
        return status if status is not None else 128 + int(self.child.signalstatus or 0)

    def kill(self) -> None:
        """Stop it hard (a test that failed midway)."""
        if self.child.isalive():
            self.child.kill(9)


def launch(command: str, env: dict[str, str], log: Path) -> Launcher:
    """Start ``command`` (a shell command line) in a terminal of its own, in the checkout."""
    child = pexpect.spawn(
        "bash", ["-c", command], cwd=ROOT, env=env, encoding="utf-8", codec_errors="replace"
    )
    child.setwinsize(50, 200)
    log.touch()
    return Launcher(child, log)
