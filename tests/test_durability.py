"""Durable execution through the real ``fanout`` command: hard crashes, failing workers, resume.

Each test runs ``fanout`` in a subprocess against the fake LLM server and counts, in the fake's
request log, which LLM calls the crashed (or failed) run and its resume made.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from langgraph_fanout.llm.retry import CLIENT_RETRIES, LLM_ATTEMPTS
from langgraph_fanout.persistence.checkpointer import open_checkpointer
from tests.fake_llm import FakeLLM
from tests.fanout_cli import (
    FANOUT,
    RUN_TIMEOUT,
    fanout,
    fanout_env,
    json_result,
    start_fanout,
    wait_for_results,
)

pytestmark = [pytest.mark.cli, pytest.mark.timeout(120)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The checkpoint database of a test: a SQLite file, or the session's PostgreSQL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "runs.sqlite")


def new_thread(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def hang_once(*matches: str) -> list[dict[str, Any]]:
    """Rules: the first request matching each string hangs; a later one answers normally."""
    return [{"match": m, "fault": "hang", "times": 1} for m in matches]


def research_role(record: dict[str, Any]) -> str:
    """The role of a research run's LLM call: plan, q<N> (researcher of question N), writer."""
    user = record["last_user"]
    if record["schema"] == "ResearchPlan":
        return "plan"
    if user.startswith("Research question") and (m := re.search(r"questions (\d) for", user)):
        return f"q{m[1]}"
    return "writer" if "Research findings" in user else "other"


def research_calls(log: list[dict[str, Any]]) -> dict[str, int]:
    """LLM calls of a research run by role (:func:`research_role`)."""
    return dict(sorted(Counter(research_role(record) for record in log).items()))


def article_calls(log: list[dict[str, Any]]) -> dict[str, int]:
    """LLM calls of an article run by role: plan, s<N> (writer of section N)."""
    calls: Counter[str] = Counter()
    for record in log:
        user = record["last_user"]
        if record["schema"] == "Sections":
            calls["plan"] += 1
        elif user.startswith("Article topic") and (m := re.search(r"name (\d) for", user)):
            calls[f"s{m[1]}"] += 1
        else:
            calls["other"] += 1
    return dict(sorted(calls.items()))


def wait_for_in_flight(fake: FakeLLM, count: int, timeout: float = 60.0) -> None:
    """Wait until ``count`` requests are in flight at the fake (the hanging ones).

    The timeout covers a `fanout` start and its first calls on a loaded 2-core machine.
    """
    deadline = time.monotonic() + timeout
    while (in_flight := fake.stats()["in_flight"]) < count:
        assert time.monotonic() < deadline, f"only {in_flight} of {count} requests in flight"
        time.sleep(0.05)


def run_and_kill(
    fake: FakeLLM, cwd: Path, db: str, argv: list[str], graph: str, node: str, done: int
) -> None:
    """Start ``fanout *argv``; SIGKILL it once ``done`` ``node`` results are checkpointed
    and the other workers' requests hang at the fake."""
    with open_checkpointer(db):
        pass  # create the tables now, so the poller never races the run's own setup
    process = start_fanout(fake, cwd, *argv, "--db", db)
    thread = argv[argv.index("--thread") + 1]
    try:
        wait_for_results(db, graph, thread, node, done)
        wait_for_in_flight(fake, 2)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nfanout stderr:\n{(cwd / 'fanout.err').read_text()}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def show(fake: FakeLLM, cwd: Path, db: str, thread: str) -> dict[str, Any]:
    result = fanout(fake, cwd, "show", thread, "--db", db, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert isinstance(shown, dict)
    return shown


def test_research_crash_resume_reruns_only_unfinished_workers(
    fake_llm: FakeLLM, tmp_path: Path, db: str, request: pytest.FixtureRequest
) -> None:
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4},
        *hang_once("Fake questions 3 for", "Fake questions 4 for"),
    )
    thread = new_thread("crash-research")

    argv = ["research", "tides", "--thread", thread]
    run_and_kill(fake_llm, tmp_path, db, argv, "research", "research_question", done=2)

    assert research_calls(fake_llm.log()) == {"plan": 1, "q1": 1, "q2": 1, "q3": 1, "q4": 1}
    crashed = show(fake_llm, tmp_path, db, thread)
    assert crashed["status"] == "incomplete"
    assert crashed["next"] == ["research_question"] * 2  # the two unfinished workers

    result = fanout(fake_llm, tmp_path, "resume", thread, "--db", db, "--json")

    output = json_result(result)
    assert result.stderr.splitlines()[0] == f"thread: {thread}"
    calls = research_calls(fake_llm.log())
    print(f"\n[{request.node.callspec.id}] research crash/resume request counts: {calls}")
    assert calls == {"plan": 1, "q1": 1, "q2": 1, "q3": 2, "q4": 2, "writer": 1}
    questions = [f"Fake questions {n} for: Topic: tides" for n in (1, 2, 3, 4)]
    assert [f["question"] for f in output["findings"]] == questions  # plan order
    assert output["task_count"] == 4
    (writer,) = [r for r in fake_llm.log() if "Research findings" in r["last_user"]]
    for finding in output["findings"]:
        assert finding["answer"].startswith("Fake answer to: Research question")
        assert finding["answer"] in writer["last_user"]  # the report is written from all four
    assert output["report"].startswith("Fake answer to: Topic: tides")


def test_article_crash_resume_does_not_rewrite_written_sections(
    fake_llm: FakeLLM, tmp_path: Path, db: str, request: pytest.FixtureRequest
) -> None:
    fake_llm.add_rules(
        {"schema": "Sections", "items": 4},
        *hang_once("Section: Fake name 3 for", "Section: Fake name 4 for"),
    )
    thread = new_thread("crash-article")

    argv = ["article", "tides", "--thread", thread, "--max-sections", "4"]
    run_and_kill(fake_llm, tmp_path, db, argv, "article", "write_section", done=2)

    assert article_calls(fake_llm.log()) == {"plan": 1, "s1": 1, "s2": 1, "s3": 1, "s4": 1}

    result = fanout(fake_llm, tmp_path, "resume", thread, "--db", db, "--json")

    output = json_result(result)
    calls = article_calls(fake_llm.log())
    print(f"\n[{request.node.callspec.id}] article crash/resume request counts: {calls}")
    assert calls == {"plan": 1, "s1": 1, "s2": 1, "s3": 2, "s4": 2}
    names = [f"Fake name {n} for: Topic: tides" for n in (1, 2, 3, 4)]
    assert [s["name"] for s in output["completed_sections"]] == names
    for name in names:
        assert f"## {name}\n\nFake answer to: Article topic: tides" in output["article"]


def test_worker_failing_every_attempt_exits_1_and_resume_finishes(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    db = str(tmp_path / "runs.sqlite")
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4},
        {"match": "Fake questions 2 for", "fault": "500"},  # every attempt
        *hang_once("Fake questions 4 for"),  # still in flight when question 2 gives up
    )
    thread = new_thread("fails")

    result = fanout(fake_llm, tmp_path, "research", "tides", "--thread", thread, "--db", db)

    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    attempts = research_calls(fake_llm.log())
    every_attempt = LLM_ATTEMPTS * (CLIENT_RETRIES + 1)  # graph attempts x client requests
    assert attempts == {"plan": 1, "q1": 1, "q2": every_attempt, "q3": 1, "q4": 1}
    failure = next(line for line in result.stderr.splitlines() if "run failed" in line)
    assert "research_question [Fake questions 2 for: Topic: tides]" in failure
    assert "Fake questions 4" not in failure  # cancelled by the failure, not failed itself
    assert "500" in failure
    assert f"fanout resume {thread} --db {db}" in result.stderr
    runs = json.loads(fanout(fake_llm, tmp_path, "runs", "--db", db, "--json").stdout)
    assert [(r["thread_id"], r["status"]) for r in runs] == [(thread, "failed")]

    fake_llm.reset()  # the fault is gone; the log now counts only the resume's calls
    resumed = fanout(fake_llm, tmp_path, "resume", thread, "--db", db, "--json")

    output = json_result(resumed)
    assert research_calls(fake_llm.log()) == {"q2": 1, "q4": 1, "writer": 1}
    assert output["task_count"] == 4
    assert [f["question"] for f in output["findings"]] == [
        f"Fake questions {n} for: Topic: tides" for n in (1, 2, 3, 4)
    ]


KILL_ROUNDS = 3


def test_a_worker_shown_done_is_never_run_again_after_a_kill(
    fake_llm: FakeLLM, tmp_path: Path, db: str
) -> None:
    """SIGKILL the instant the progress log says a researcher is done: the resume skips it."""
    with open_checkpointer(db):
        pass
    for round_ in range(KILL_ROUNDS):
        fake_llm.reset()
        fake_llm.add_rules(
            {"schema": "ResearchPlan", "items": 4},
            *hang_once("Fake questions 3 for", "Fake questions 4 for"),
            {"match": "Fake questions 2 for", "latency": 0.3, "times": 1},
        )
        thread = new_thread(f"shown-done-{round_}")
        argv = ["research", "tides", "--thread", thread, "--db", db]
        process = subprocess.Popen(
            [*FANOUT, *argv],
            cwd=tmp_path,
            env=fanout_env(fake_llm),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        done = None
        assert process.stderr is not None
        for line in process.stderr:
            if found := re.search(r"research_question \[Fake questions (\d) for.*\]: done", line):
                process.send_signal(signal.SIGKILL)
                done = f"q{found[1]}"
                break
        process.wait(timeout=RUN_TIMEOUT)
        assert done is not None and process.returncode == -signal.SIGKILL
        fake_llm.reset()

        json_result(fanout(fake_llm, tmp_path, "resume", thread, "--db", db, "--json"))

        assert done not in research_calls(fake_llm.log()), (round_, done)
