"""The command line becomes one typed request at the parser's edge; each option's help is
true for its command."""

from __future__ import annotations

import pytest

from langgraph_fanout.cli.main import build_parser, request_from
from langgraph_fanout.cli.request import Request
from langgraph_fanout.workflows import WORKFLOWS


def request(*argv: str) -> Request:
    return request_from(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        [w.command, "x"] for w in WORKFLOWS.values()
    ] + [["resume", "t"], ["runs"], ["show", "t"], ["worker", "--temporal", "h:1"]],
    ids=[*(w.command for w in WORKFLOWS.values()), "resume", "runs", "show", "worker"],
)  # fmt: skip
def test_every_command_line_is_a_request(argv: list[str]) -> None:
    assert request(*argv).command == argv[0]


def test_a_request_holds_what_the_command_line_says() -> None:
    started = request(
        "article", "tides", "--thread", "t1", "--max-sections", "3", "--max-llm-calls", "9",
        "--temporal", "h:1", "--task-queue", "q", "--review",
    )  # fmt: skip
    assert (started.value, started.thread_id, started.settings) == (
        "tides",
        "t1",
        {"max_sections": 3},
    )
    assert (started.max_llm_calls, started.temporal, started.task_queue) == (9, "h:1", "q")
    assert started.review and started.sets_limits and started.model == ""
    moved = request("resume", "t1", "--move", "--rename", "a=b", "--rename", "c=d")
    assert (moved.thread_id, moved.move, moved.renames) == ("t1", True, {"a": "b", "c": "d"})
    assert request("article", "tides").settings == {}  # unset: the run's default
    assert request("worker", "--temporal", "h:1", "--no-promote").promote is False


def option_help(capsys: pytest.CaptureFixture[str], command: str, option: str) -> str:
    """What ``fanout COMMAND --help`` says of ``option``, on one line."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index(f" {option} ")
    end = text.find(" --", start + len(option) + 2)
    return text[start : end if end > 0 else len(text)]


def test_each_option_says_what_it_does_for_its_command(capsys: pytest.CaptureFixture[str]):
    def says(command: str, option: str, words: str) -> None:
        assert words in option_help(capsys, command, option), (command, option)

    says("article", "--temporal HOST:PORT", "instead of in this process")
    says("show", "--temporal HOST:PORT", "the run is on this Temporal server")
    says("resume", "--temporal HOST:PORT", "the run is on this Temporal server")
    says("runs", "--temporal HOST:PORT", "list the runs")
    says("article", "--json", "the result")
    says("show", "--json", "whole state")
    says("runs", "--json", "JSON list")
    says("runs", "--task-queue NAME", "runs of every task queue")
    says("article", "--model MODEL", "$FANOUT_MODEL")
    says("resume", "--model MODEL", "the run's own")
