"""The ``fanout`` command surface, end to end in subprocesses against the fake LLM server."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from state.inputs import MAX_TEXT_CHARS, MAX_TOPIC_CHARS
from tests.fake_llm import FakeLLM
from tests.fanout_cli import fanout, json_result, thread_exists

pytestmark = [pytest.mark.cli, pytest.mark.timeout(120)]

DEFAULT_DB = Path(".fanout/checkpoints.sqlite")


@dataclass
class Run:
    """One finished ``fanout`` process and what the fake LLM saw during it."""

    result: subprocess.CompletedProcess[str]
    log: list[dict[str, Any]]
    peak_in_flight: int

    @property
    def output(self) -> dict[str, Any]:
        return json_result(self.result)

    @property
    def thread_line(self) -> str:
        return self.result.stderr.splitlines()[0]


@dataclass
class Workspace:
    """A directory in which each workflow ran once, into the default database."""

    cwd: Path
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return str(self.cwd / DEFAULT_DB)


@pytest.fixture(scope="module")
def workspace(fake_llm_server: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Run evaluate, article (topic on stdin) and research (``--thread``), plus a plain run."""
    fake = fake_llm_server
    space = Workspace(tmp_path_factory.mktemp("cli"))

    def run(name: str, *args: str, stdin: str = "", latency: float = 0.0) -> None:
        fake.reset()
        fake.configure(latency=latency)
        result = fanout(fake, space.cwd, *args, stdin=stdin)
        space.runs[name] = Run(result, fake.log(), fake.stats()["peak_in_flight"])
        assert result.returncode == 0, result.stderr

    run("evaluate", "evaluate", "A short, friendly text about tides.", "--json")
    run("article", "article", "-", "--max-sections", "3", "--json", stdin="  Tides\n", latency=0.5)
    run("research", "research", "tides", "--thread", "my-thread", "--json")
    run("plain", "evaluate", "Plain output, please.")
    fake.reset()
    return space


# --- running the workflows ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("evaluate", {"is_appropriate", "summary", "evaluations", "votes"}),
        ("article", {"sections", "completed_sections", "article", "review"}),
        ("research", {"report", "task_count", "findings", "review"}),
    ],
)
def test_json_run_prints_one_object_and_thread_first(
    workspace: Workspace, name: str, keys: set[str]
) -> None:
    run = workspace.runs[name]

    output = run.output  # exactly one JSON line on stdout

    assert set(output) == {"thread_id", "usage", *keys}
    assert run.thread_line == f"thread: {output['thread_id']}"
    assert output["usage"]["llm_calls"] == len(run.log)
    assert output["usage"]["total_tokens"] > 0


def test_evaluate_judges_with_every_branch(workspace: Workspace) -> None:
    output = workspace.runs["evaluate"].output

    assert [e["evaluator"] for e in output["evaluations"]] == ["safety", "tone", "audience_fit"]
    assert output["votes"] == 3 and output["is_appropriate"] is True


def test_topic_from_stdin(workspace: Workspace) -> None:
    output = workspace.runs["article"].output

    assert output["article"].startswith("# Tides\n")
    assert len(output["completed_sections"]) == 3
    assert workspace.runs["article"].peak_in_flight == 3  # the sections were written at once


def test_thread_option_names_the_run(workspace: Workspace) -> None:
    run = workspace.runs["research"]

    assert run.output["thread_id"] == "my-thread"
    assert run.thread_line == "thread: my-thread"


def test_plain_output_is_human_readable(workspace: Workspace) -> None:
    result = workspace.runs["plain"].result

    assert result.stdout.startswith("appropriate (3/3 evaluators vote appropriate)")
    assert "- safety: yes - " in result.stdout
    assert "done: 4 LLM calls" in result.stderr


def test_max_concurrency_caps_parallel_llm_calls(fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.configure(latency=0.4)
    fake_llm.add_rules({"schema": "Sections", "items": 4})

    result = fanout(
        fake_llm, tmp_path, "article", "tides", "--max-sections", "4", "--max-concurrency", "2"
    )

    assert result.returncode == 0, result.stderr
    assert len(fake_llm.log()) == 5
    assert fake_llm.stats()["peak_in_flight"] == 2


# --- runs, show, resume ---------------------------------------------------------------------


def test_runs_lists_recent_runs_newest_first(fake_llm: FakeLLM, workspace: Workspace) -> None:
    listed = fanout(fake_llm, workspace.cwd, "runs", "--json")
    table = fanout(fake_llm, workspace.cwd, "runs")

    assert listed.returncode == 0 and table.returncode == 0, listed.stderr + table.stderr
    runs = json.loads(listed.stdout)
    assert [(r["graph"], r["status"]) for r in runs] == [
        ("evaluation", "done"),
        ("research", "done"),
        ("article", "done"),
        ("evaluation", "done"),
    ]
    inputs = [r["input"] for r in runs]
    assert inputs[1:] == ["tides", "Tides", "A short, friendly text about tides."]
    assert all(r["started"] for r in runs)
    assert {r["door"] for r in runs} == {"fanout"}
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["thread", "graph", "status", "started", "(UTC)", "door", "input"]
    for run in runs:  # whole thread ids, even in 80 columns
        assert any(line.split()[:3] == [run["thread_id"], run["graph"], "done"] for line in lines)


def test_show_prints_the_state_readably_and_as_json(
    fake_llm: FakeLLM, workspace: Workspace
) -> None:
    readable = fanout(fake_llm, workspace.cwd, "show", "my-thread")
    result = fanout(fake_llm, workspace.cwd, "show", "my-thread", "--json")

    assert readable.returncode == 0, readable.stderr
    lines = readable.stdout.splitlines()
    assert lines[:3] == ["thread_id: my-thread", "graph: research", "status: done"]
    report = workspace.runs["research"].output["report"]
    assert report.splitlines()[0] in lines  # then the result, as the run printed it
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    shown = json.loads(result.stdout)
    assert shown["thread_id"] == "my-thread"
    assert shown["graph"] == "research" and shown["status"] == "done"
    assert shown["next"] == [] and shown["pending"] == []
    assert shown["values"]["topic"] == "tides"
    assert len(shown["values"]["findings"]) == 3


def test_resume_of_a_finished_run_prints_its_result(
    fake_llm: FakeLLM, workspace: Workspace
) -> None:
    result = fanout(fake_llm, workspace.cwd, "resume", "my-thread", "--json")

    output = json_result(result)
    original = workspace.runs["research"].output
    assert {**output, "usage": None} == {**original, "usage": None}
    assert fake_llm.log() == []  # nothing ran again
    assert "already finished" in result.stderr


def test_resume_of_an_unknown_id_exits_2(fake_llm: FakeLLM, workspace: Workspace) -> None:
    result = fanout(fake_llm, workspace.cwd, "resume", "no-such-thread")

    assert result.returncode == 2
    assert "no run with thread id 'no-such-thread'" in result.stderr
    assert result.stdout == ""


def test_resume_without_a_database_exits_2_and_creates_none(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    result = fanout(fake_llm, tmp_path, "resume", "no-such-thread")

    assert result.returncode == 2, result.stderr
    assert not (tmp_path / ".fanout").exists()


def test_thread_of_another_graph_is_refused(fake_llm: FakeLLM, workspace: Workspace) -> None:
    result = fanout(fake_llm, workspace.cwd, "evaluate", "hello", "--thread", "my-thread")

    assert result.returncode == 2
    assert "already holds a research run" in result.stderr
    assert fake_llm.log() == []


# --- bad usage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["evaluate", ""], "", "at least 1 character"),
        (["article", " \n\t "], "", "must not be empty or only whitespace"),
        (["research", "x" * (MAX_TOPIC_CHARS + 1)], "", f"at most {MAX_TOPIC_CHARS} characters"),
        (["evaluate", "-"], "y" * (MAX_TEXT_CHARS + 1), f"at most {MAX_TEXT_CHARS} characters"),
        (["research", "-"], "   \n", "must not be empty or only whitespace"),
    ],
    ids=["empty", "whitespace", "oversized", "oversized-stdin", "whitespace-stdin"],
)
def test_bad_input_exits_2_and_persists_nothing(
    fake_llm: FakeLLM, tmp_path: Path, args: list[str], stdin: str, message: str
) -> None:
    result = fanout(fake_llm, tmp_path, *args, "--json", stdin=stdin)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / ".fanout").exists()  # no database, so no checkpoint
    assert fake_llm.log() == []


def test_bad_input_writes_no_checkpoint_into_an_existing_db(
    fake_llm: FakeLLM, workspace: Workspace
) -> None:
    result = fanout(fake_llm, workspace.cwd, "research", "  ", "--thread", "bad-input")

    assert result.returncode == 2
    assert not thread_exists(workspace.db, "bad-input")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-concurrency", "0"], "argument --max-concurrency: must be >= 1, got 0"),
        (["--max-concurrency", "-3"], "argument --max-concurrency: must be >= 1, got -3"),
        (["--max-sections", "0"], "max_sections: Input should be greater than or equal to 1"),
        (["--model", "no-provider"], "must be 'provider:model'"),
        (["--model", "nonexistentprovider:x"], "model 'nonexistentprovider:x'"),
        (["--thread", " "], "argument --thread: must not be empty"),
        (["--thread", "a\x1bb"], "argument --thread: must not contain control characters"),
        (["--thread", "t" * 201], "argument --thread: longer than 200 characters"),
    ],
    ids=[
        "max-concurrency-0",
        "max-concurrency-negative",
        "max-sections",
        "model",
        "unknown-provider",
        "thread-blank",
        "thread-escape",
        "thread-long",
    ],
)
def test_bad_options_exit_2_and_persist_nothing(
    fake_llm: FakeLLM, tmp_path: Path, args: list[str], message: str
) -> None:
    result = fanout(fake_llm, tmp_path, "article", "tides", *args)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / ".fanout").exists()
    assert fake_llm.log() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--move"], "--move and --rename move a Temporal run: add --temporal HOST:PORT"),
        (["--rename", "a=b"], "--move and --rename move a Temporal run"),
        (["--move", "--rename", "write_part"], "expected OLD=NEW, two node names"),
        (["--temporal", "127.0.0.1:1", "--rename", "a=b"], "--rename goes with --move"),
    ],
    ids=["move-without-temporal", "rename-without-temporal", "rename-malformed", "rename-alone"],
)
def test_bad_move_options_exit_2(
    fake_llm: FakeLLM, tmp_path: Path, args: list[str], message: str
) -> None:
    result = fanout(fake_llm, tmp_path, "resume", "t", *args)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / ".fanout").exists()


def test_unreachable_database_exits_2_without_leaking_the_password(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    url = "postgresql://fanout:s3cret@127.0.0.1:1/fanout"  # nothing listens on port 1

    result = fanout(fake_llm, tmp_path, "research", "tides", "--db", url)

    assert result.returncode == 2, result.stderr
    assert "cannot open postgresql://fanout:***@127.0.0.1:1/fanout" in result.stderr
    assert "s3cret" not in result.stderr
    assert fake_llm.log() == []
