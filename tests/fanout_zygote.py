"""Run ``fanout`` commands in processes forked from one that has imported the heavy libraries.

Each ``python -m langgraph_fanout.cli`` that runs a graph spends ~4.5 s of CPU importing openai,
LangChain and LangGraph before its first line of work (5 of a research run's 6 s, measured on
the 2-core CI machine; the tests start some 250 of them). This zygote imports those libraries
once (not the project: every command imports its own modules fresh) and forks a child per
command; the child runs ``langgraph_fanout.cli`` as ``python -m`` does, with the command's
working directory, environment and files as its stdin, stdout and stderr. It is a process of
its own, with its own pid and exit status, and none of the zygote's state but imported modules.

Protocol (one zygote serves one test process; its children run side by side): a JSON request
per line on stdin, ``{"id", "argv", "cwd", "env", "stdin", "stdout", "stderr"}`` (the last three
are paths), or ``{"id", "argv", "cwd", "env", "terminal"}`` (a pseudo-terminal's path: the
child's controlling terminal, as a shell's foreground job has); the answers on stdout:
``{"id", "pid"}`` once the child runs, ``{"id", "code"}`` when it has ended (negative: killed by
that signal, as ``subprocess`` reports it).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import itertools
import json
import os
import queue
import runpy
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
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
PRELOAD_IF_INSTALLED = ("temporalio.client", "temporalio.worker", "temporalio.langgraph")
"""The ``[temporal]`` extra: ~0.2 s of CPU more per Temporal command and worker."""


def _child(request: dict[str, Any], imports_printed: str, terminal: int | None) -> None:
    """In the forked child: become ``python -m langgraph_fanout.cli *argv`` (never returns).

    ``imports_printed``: what the zygote's imports wrote to stderr (warnings), which a
    process of its own would print too. ``terminal``: the request's pseudo-terminal, opened.
    """
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if terminal is None:
        files = ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY))
        for fd, name, flags in files:
            opened = os.open(request[name], flags | (os.O_CREAT | os.O_TRUNC if fd else 0), 0o644)
            os.dup2(opened, fd)
            os.close(opened)
    else:  # a session of its own on the terminal: Ctrl-C there sends it SIGINT
        os.setsid()
        fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(terminal, fd)
        os.close(terminal)
        # As a shell starts a foreground job, whatever the zygote inherited (a background
        # job's SIGINT is ignored, and Python then keeps ignoring it).
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
    """Import :data:`PRELOAD` (and :data:`PRELOAD_IF_INSTALLED`), then fork one child per
    request until stdin closes."""
    with tempfile.TemporaryFile() as printed:  # what the imports print, each child repeats
        saved = os.dup(2)
        os.dup2(printed.fileno(), 2)
        try:
            for name in PRELOAD:
                importlib.import_module(name)
            for name in PRELOAD_IF_INSTALLED:
                with contextlib.suppress(ImportError):
                    importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        printed.seek(0)
        imports_printed = printed.read().decode("utf-8", "backslashreplace")
    # Forking a process with threads can deadlock the child; native ones count (Linux).
    if len(os.listdir("/proc/self/task")) != 1 or threading.active_count() != 1:
        sys.exit(f"a preloaded module started threads: {threading.enumerate()}")
    answers = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=answers, flush=True)
    # A child's end wakes the select below: SIGCHLD writes to this pipe.
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, int] = {}  # pid: request id
    pending = b""
    while True:
        ready, _, _ = select.select([0, woken], [], [])
        if woken in ready:
            os.read(woken, 4096)
        while children and (ended := os.waitpid(-1, os.WNOHANG))[0]:
            pid, status = ended
            code = os.waitstatus_to_exitcode(status)
            print(json.dumps({"id": children.pop(pid), "code": code}), file=answers, flush=True)
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return  # the test process is done (it reaped or killed what it started)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            request = json.loads(line)
            # Opened before the fork: the child holds the terminal once its pid is answered.
            terminal = (
                os.open(request["terminal"], os.O_RDWR | os.O_NOCTTY)
                if "terminal" in request
                else None
            )
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(woken)
                os.close(wake)
                _child(request, imports_printed, terminal)
            if terminal is not None:
                os.close(terminal)
            children[pid] = request["id"]
            print(json.dumps({"id": request["id"], "pid": pid}), file=answers, flush=True)


class Zygote:
    """The test process's side: start the zygote, start commands in it."""

    def __init__(self, env: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._answers: dict[int, queue.SimpleQueue[dict[str, Any]]] = {}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.fanout_zygote"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT)
        if not ready or not self._process.stdout.readline():  # {"ready": pid}
            self._process.kill()
            raise RuntimeError(f"the fanout zygote did not start ({self._process.wait()})")
        threading.Thread(target=self._dispatch, daemon=True).start()

    def spawn(
        self, argv: list[str], cwd: Path, env: dict[str, str], stdin: str, stdout: str, stderr: str
    ) -> ZygoteProcess:
        """Start ``fanout *argv`` in ``cwd``; ``stdin``, ``stdout``, ``stderr``: file paths.

        The output files exist (empty) once it returns, as with ``subprocess.Popen``.
        """
        for output in (stdout, stderr):
            if output != os.devnull:
                Path(output).write_bytes(b"")
        return self._start(argv, cwd, env, {"stdin": stdin, "stdout": stdout, "stderr": stderr})

    def spawn_on_terminal(
        self, argv: list[str], cwd: Path, env: dict[str, str], rows: int, columns: int
    ) -> tuple[ZygoteProcess, int]:
        """Start ``fanout *argv`` in ``cwd`` on a new ``rows`` x ``columns`` pseudo-terminal,
        its controlling terminal; the terminal's master side (a file descriptor to close)."""
        master, slave = os.openpty()
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            process = self._start(argv, cwd, env, {"terminal": os.ttyname(slave)})
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the child holds it now: its end is the terminal's end of file
        return process, master

    def _start(
        self, argv: list[str], cwd: Path, env: dict[str, str], io: dict[str, str]
    ) -> ZygoteProcess:
        answers: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        with self._lock:
            request_id = next(self._ids)
            self._answers[request_id] = answers
            request = {"id": request_id, "argv": argv, "cwd": str(cwd), "env": env, **io}
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        try:
            pid = answers.get(timeout=START_TIMEOUT)["pid"]
        except queue.Empty:
            raise subprocess.TimeoutExpired("fanout zygote", START_TIMEOUT) from None
        return ZygoteProcess(["fanout", *argv], pid, answers)

    def run(
        self, argv: list[str], cwd: Path, env: dict[str, str], stdin: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``fanout *argv`` to completion, as ``subprocess.run`` with ``capture_output``.

        Raises:
            subprocess.TimeoutExpired: it ran past ``timeout`` (it is killed first).
        """
        with tempfile.TemporaryDirectory() as scratch:
            paths = {name: str(Path(scratch) / name) for name in ("stdin", "stdout", "stderr")}
            Path(paths["stdin"]).write_text(stdin, encoding="utf-8")
            process = self.spawn(argv, cwd, env, **paths)
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(START_TIMEOUT)
                raise
            out, err = (Path(paths[n]).read_text(encoding="utf-8") for n in ("stdout", "stderr"))
        return subprocess.CompletedProcess(process.args, code, out, err)

    def alive(self) -> bool:
        """Whether the zygote still serves (it dies with a broken preload, or when killed)."""
        return self._process.poll() is None

    def close(self) -> None:
        """Stop the zygote (its stdin closes: it leaves its loop)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)

    def _dispatch(self) -> None:
        """Hand each answer to the command it is about; on the zygote's end, tell them all."""
        assert self._process.stdout is not None
        for line in self._process.stdout:
            answer = json.loads(line)
            with self._lock:
                self._answers[answer["id"]].put(answer)
                if "code" in answer:
                    del self._answers[answer["id"]]
        with self._lock:
            for answers in self._answers.values():
                answers.put({})
            self._answers.clear()


class ZygoteProcess:
    """A command running in a child of the zygote, used as a ``subprocess.Popen`` is."""

    def __init__(
        self, args: list[str], pid: int, answers: queue.SimpleQueue[dict[str, Any]]
    ) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._answers = answers

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code once it ends (negative: the signal that killed it).

        Raises:
            subprocess.TimeoutExpired: it still runs after ``timeout`` seconds.
            RuntimeError: the zygote died, and with it the news of this command's end.
        """
        if self.returncode is None:
            try:
                answer = self._answers.get(timeout=timeout)
            except queue.Empty:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            if "code" not in answer:
                raise RuntimeError(f"the fanout zygote died while {self.args} ran")
            self.returncode = int(answer["code"])
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to it, unless it has ended (its pid may be another's by then)."""
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    main()
