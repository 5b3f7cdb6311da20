"""The zygote that runs the tests' ``fanout`` commands behaves as ``python -m`` would."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from tests.fake_llm import FakeLLM
from tests.fanout_cli import FANOUT, fanout, fanout_env, start_on_terminal, zygote
from tests.test_cli_review import ANSI, PROMPT, spawn

pytestmark = pytest.mark.cli

COMMANDS = [
    pytest.param(["evaluate", "-"], "  A text from stdin.\n", id="stdin-json-run"),
    pytest.param(["research", "", "--json"], "", id="usage-error"),
    pytest.param(["runs", "--db", "postgresql://u:secret@"], "", id="bad-url"),
    pytest.param(["show", "nothing-here"], "", id="no-run"),
]


def lines(stderr: str) -> list[str]:
    """``stderr``'s lines without thread ids and timings, sorted (workers end in any order)."""
    masked = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "ID", stderr)
    return sorted(re.sub(r"\d+\.\d+s", "T", line) for line in masked.splitlines())


@pytest.mark.parametrize(("argv", "stdin"), COMMANDS)
def test_a_command_prints_and_exits_as_its_own_process_does(
    fake_llm: FakeLLM, tmp_path: Path, argv: list[str], stdin: str
) -> None:
    (tmp_path / "forked").mkdir()
    (tmp_path / "started").mkdir()
    forked = fanout(fake_llm, tmp_path / "forked", *argv, "--json", stdin=stdin)
    started = subprocess.run(
        [*FANOUT, *argv, "--json"],
        cwd=tmp_path / "started",
        env=fanout_env(fake_llm),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert forked.returncode == started.returncode
    assert lines(forked.stderr) == lines(started.stderr)
    if forked.returncode == 0:  # the thread id differs: compare the rest
        one, other = json.loads(forked.stdout), json.loads(started.stdout)
        assert one.pop("thread_id") != other.pop("thread_id")
        assert one == other
    else:
        assert forked.stdout == started.stdout == ""
    assert sorted(p.name for p in (tmp_path / "forked").iterdir()) == sorted(
        p.name for p in (tmp_path / "started").iterdir()
    )


def test_a_command_past_its_timeout_is_killed_and_reported(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.add_rules({"match": "A held text.", "hold": True})
    started = time.monotonic()

    with pytest.raises(subprocess.TimeoutExpired):
        fanout(fake_llm, tmp_path, "evaluate", "A held text.", timeout=3)
    fake_llm.release()
    after = fanout(fake_llm, tmp_path, "runs", "--json")

    assert time.monotonic() - started < 60
    assert after.returncode == 0, after.stderr  # the zygote serves on
    assert zygote(fake_llm).alive()


def test_a_command_on_a_terminal_takes_ctrl_c_as_its_own_process_does(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """Forked on a pseudo-terminal of its own, or started by ``pexpect.spawn``: the plan
    review prompts (stdin is a terminal), and Ctrl-C there stops it with the same words."""
    screens = {}
    for name, start in (("forked", start_on_terminal), ("started", spawn)):
        cwd = tmp_path / name
        cwd.mkdir()
        child = start(fake_llm, cwd, "article", "Tides", "--review", "--thread", "t")
        child.expect(PROMPT)
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130, (name, child.signalstatus, child.before)
        screens[name] = ANSI.sub("", child.before).replace("\r", "").strip()

    assert screens["forked"] == screens["started"]
    assert "interrupted; finished work is saved; resume with: fanout resume t" in screens["forked"]
