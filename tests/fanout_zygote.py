"""Run ``fanout`` commands in processes forked from one that has imported the heavy libraries.

Each ``python -m langgraph_fanout.cli`` that runs a graph spends ~4.5 s of CPU importing openai,
LangChain and LangGraph before its first line of work (5 of a research run's 6 s, measured on
the 2-core CI machine; the tests start some 250 of them). This zygote imports those libraries
once (not the project: every command imports its own modules fresh) and forks a child per
command; the child runs ``langgraph_fanout.cli`` as ``python -m`` does, with the command's
working directory, environment and files as its stdin, stdout and stderr. It is a process of
its own, with its own pid and exit status, and none of the zygote's state but imported modules.

Protocol (one zygote serves one test process, one command at a time): a JSON request per line
on stdin, ``{"argv", "cwd", "env", "stdin", "stdout", "stderr"}`` (the last three are paths);
the answers on stdout: ``{"pid": N}`` once the child runs, ``{"code": C}`` when it has ended
(negative: killed by that signal, as ``subprocess`` reports it).
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120.0
"""Seconds for the zygote's imports (or a fork) on a loaded 2-core machine."""

PRELOAD = (
    "openai",
    "langchain_openai",
    "langgraph.graph",
    "langgraph.checkpoint.sqlite.aio",
    "langgraph.checkpoint.postgres.aio",
    "pydantic",
)


def _child(request: dict[str, Any], imports_printed: str) -> None:
    """In the forked child: become ``python -m langgraph_fanout.cli *argv`` (never returns).

    ``imports_printed``: what the zygote's imports wrote to stderr (warnings), which a
    process of its own would print too.
    """
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    files = ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY))
    for fd, name, flags in files:
        opened = os.open(request[name], flags | (os.O_CREAT | os.O_TRUNC if fd else 0), 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    # New text streams: the zygote's own buffered its requests (stdin) and answers (stdout).
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(  # noqa: SIM115
        2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1
    )
    sys.stderr.write(imports_printed)
    sys.argv = ["fanout", *request["argv"]]
    runpy.run_module("langgraph_fanout.cli", run_name="__main__", alter_sys=True)
    sys.exit(0)


def main() -> None:
    """Import :data:`PRELOAD`, then fork one child per request until stdin closes."""
    with tempfile.TemporaryFile() as printed:  # what the imports print, each child repeats
        saved = os.dup(2)
        os.dup2(printed.fileno(), 2)
        try:
            for name in PRELOAD:
                importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        printed.seek(0)
        imports_printed = printed.read().decode("utf-8", "backslashreplace")
    if threading.active_count() != 1:  # forking a process with threads can deadlock the child
        sys.exit(f"a preloaded module started threads: {threading.enumerate()}")
    answers = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=answers, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request, imports_printed)
        print(json.dumps({"pid": pid}), file=answers, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), file=answers, flush=True)


class Zygote:
    """The test process's side: start the zygote, run commands in it."""

    def __init__(self, env: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.fanout_zygote"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._answer(START_TIMEOUT)  # {"ready": pid}

    def run(
        self, argv: list[str], cwd: Path, env: dict[str, str], stdin: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``fanout *argv`` to completion, as ``subprocess.run`` with ``capture_output``.

        Raises:
            subprocess.TimeoutExpired: it ran past ``timeout`` (it is killed first).
        """
        with self._lock, tempfile.TemporaryDirectory() as scratch:
            paths = {name: str(Path(scratch) / name) for name in ("stdin", "stdout", "stderr")}
            Path(paths["stdin"]).write_text(stdin, encoding="utf-8")
            request = {"argv": argv, "cwd": str(cwd), "env": env, **paths}
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            pid = self._answer(START_TIMEOUT)["pid"]
            try:
                code = self._answer(timeout)["code"]
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._answer(START_TIMEOUT)
                raise subprocess.TimeoutExpired(["fanout", *argv], timeout) from None
            out, err = (Path(paths[n]).read_text(encoding="utf-8") for n in ("stdout", "stderr"))
        return subprocess.CompletedProcess(["fanout", *argv], code, out, err)

    def alive(self) -> bool:
        """Whether the zygote still serves (it dies with a broken preload, or when killed)."""
        return self._process.poll() is None

    def close(self) -> None:
        """Stop the zygote (its stdin closes: it leaves its loop)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)

    def _answer(self, timeout: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            raise subprocess.TimeoutExpired("fanout zygote", timeout)
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fanout zygote exited ({self._process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


if __name__ == "__main__":
    main()
