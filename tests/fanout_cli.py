"""Run the real ``fanout`` command in a subprocess, and read what a run left in its database."""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from pexpect.fdpexpect import fdspawn

from langgraph_fanout.persistence.checkpointer import open_checkpointer
from langgraph_fanout.persistence.urls import is_postgres, sqlite_file
from langgraph_fanout.workflows import WORKFLOWS
from tests.fake_llm import FakeLLM
from tests.fanout_zygote import Zygote, ZygoteProcess

FANOUT = [sys.executable, "-m", "langgraph_fanout.cli"]
Process = subprocess.Popen[Any] | ZygoteProcess
"""A ``fanout`` command started in the background (forked from the zygote, or not)."""
RUN_TIMEOUT = 60.0
"""Seconds any one ``fanout`` process may take before the test fails."""


def fanout_env(fake: FakeLLM) -> dict[str, str]:
    """This process's environment, pointed at ``fake``, with no database or tracing set."""
    env = dict(os.environ)
    # COLUMNS and LINES: pytest-xdist's workers set 80 x 24, which would override a pty's size.
    for name in (
        "FANOUT_DB",
        "LANGSMITH_TRACING",
        "LANGCHAIN_TRACING_V2",
        "LANGSMITH_API_KEY",
        "COLUMNS",
        "LINES",
    ):
        env.pop(name, None)
    env.update(
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY="test-key",
        FANOUT_MODEL="openai:fake-model",
        NO_COLOR="1",
    )
    return env


def fanout(
    fake: FakeLLM,
    cwd: Path,
    *args: str,
    stdin: str = "",
    timeout: float = RUN_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``fanout *args`` to completion in ``cwd`` (``env``: variables to add).

    In a process forked from :func:`zygote` (``tests/fanout_zygote.py``): the same command
    without its seconds of imports.
    """
    return zygote(fake).run(list(args), cwd, fanout_env(fake) | (env or {}), stdin, timeout)


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def zygote(fake: FakeLLM) -> Zygote:
    """This test process's :class:`~tests.fanout_zygote.Zygote` (started on first use)."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or not _zygote.alive():
            _zygote = Zygote(fanout_env(fake))
            atexit.register(_zygote.close)
        return _zygote


def start_fanout(
    fake: FakeLLM,
    cwd: Path,
    *args: str,
    stdout: str | None = "fanout.out",
    stderr: str = "fanout.err",
) -> ZygoteProcess:
    """Start ``fanout *args`` in ``cwd``, forked as :func:`fanout`'s are; its stdout and stderr
    go to those files of ``cwd`` (stdout None: nowhere)."""
    out = os.devnull if stdout is None else str(cwd / stdout)
    return zygote(fake).spawn(list(args), cwd, fanout_env(fake), os.devnull, out, str(cwd / stderr))


class Terminal(fdspawn):
    """A ``fanout`` command on a pseudo-terminal, forked as :func:`fanout`'s are, driven as a
    ``pexpect.spawn`` is (``expect``, ``before``, ``sendintr``, ``kill``, ``close``,
    ``exitstatus``)."""

    def __init__(self, process: ZygoteProcess, master: int, timeout: float) -> None:
        super().__init__(master, timeout=timeout, encoding="utf-8")
        self.process = process
        self.pid = process.pid
        self.exitstatus: int | None = None
        self.signalstatus: int | None = None

    def sendintr(self) -> None:
        """Ctrl-C: the terminal's interrupt character, which sends SIGINT to the command."""
        os.write(self.child_fd, termios.tcgetattr(self.child_fd)[6][termios.VINTR])

    def kill(self, sig: int) -> None:
        self.process.send_signal(sig)

    def close(self) -> None:
        """Close the terminal and wait for the command: ``exitstatus`` or ``signalstatus``."""
        super().close()
        code = self.process.wait(RUN_TIMEOUT)
        if code < 0:
            self.signalstatus = -code
        else:
            self.exitstatus = code


def start_on_terminal(
    fake: FakeLLM, cwd: Path, *args: str, dimensions: tuple[int, int] = (40, 120)
) -> Terminal:
    """Start ``fanout *args`` in ``cwd`` on a pseudo-terminal of ``dimensions`` (rows,
    columns), forked as :func:`fanout`'s are."""
    process, master = zygote(fake).spawn_on_terminal(list(args), cwd, fanout_env(fake), *dimensions)
    return Terminal(process, master, RUN_TIMEOUT)


def json_result(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object a ``--json`` run printed; fails unless stdout is exactly that."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def wait_for_results(
    db: str, graph: str, thread_id: str, node: str, count: int, timeout: float = 60.0
) -> None:
    """Poll the checkpoint ``db`` until ``count`` ``node`` tasks of the run have saved results.

    The timeout covers a `fanout` start and its first calls on a loaded 2-core machine.
    """
    workflow = WORKFLOWS[graph]
    config = RunnableConfig(configurable={"thread_id": thread_id})
    deadline = time.monotonic() + timeout
    seen = -1
    with open_checkpointer(db) as saver:
        compiled = workflow.compile(saver)
        while time.monotonic() < deadline:
            tasks = compiled.get_state(config).tasks
            seen = sum(1 for t in tasks if t.name == node and t.result is not None)
            if seen >= count:
                return
            time.sleep(0.1)
    raise AssertionError(f"only {seen} of {count} {node} results saved after {timeout:g}s")


def thread_exists(db: str, thread_id: str) -> bool:
    """Whether ``db`` holds any checkpoint of ``thread_id``."""
    with open_checkpointer(db) as saver:
        config = RunnableConfig(configurable={"thread_id": thread_id})
        return saver.get_tuple(config) is not None


def saved_rows(db: str, thread_id: str) -> dict[str, int]:
    """How many rows of each checkpoint table ``db`` holds for ``thread_id``."""
    tables = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
    with open_checkpointer(db) as saver:  # makes the tables if need be
        if is_postgres(db):
            with saver.conn.cursor() as cursor:  # type: ignore[attr-defined]
                return {
                    table: cursor.execute(
                        f"select count(*) as n from {table} where thread_id = %s", (thread_id,)
                    ).fetchone()["n"]
                    for table in tables
                }
    with sqlite3.connect(sqlite_file(db)) as connection:
        return {
            table: connection.execute(
                f"select count(*) from {table} where thread_id = ?", (thread_id,)
            ).fetchone()[0]
            for table in ("checkpoints", "writes")
        }
