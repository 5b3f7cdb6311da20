"""One writer per thread: two processes never run one thread at once, and a dead one frees it."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig

from fake_llm import FakeLLM
from persistence.checkpointer import open_checkpointer
from persistence.thread_lock import ThreadBusyError, thread_lock
from tests.fanout_cli import RUN_TIMEOUT, start_fanout, wait_for_results
from tests.test_durability import (
    article_calls,
    hang_once,
    new_thread,
    research_calls,
    run_and_kill,
)

pytestmark = pytest.mark.timeout(180)
HOLD = 3.0
"""Seconds the winner's first LLM call takes, so the loser arrives while the lock is held."""
BUSY = "is running elsewhere"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "runs.sqlite")


def branches(db: str, thread_id: str) -> int:
    """How many checkpoints of the thread share a parent with another one (0: one branch)."""
    config = RunnableConfig(configurable={"thread_id": thread_id, "checkpoint_ns": ""})
    with open_checkpointer(db) as saver:
        parents = Counter(
            c.parent_config["configurable"]["checkpoint_id"] if c.parent_config else None
            for c in saver.list(config)
        )
    assert parents, "the thread has no checkpoints"
    return sum(n - 1 for n in parents.values())


def run_both(fake: FakeLLM, cwd: Path, *argvs: list[str]) -> list[tuple[int, str]]:
    """Start every ``fanout`` command at once (each in its own folder); exit codes and stderr."""
    processes = []
    for n, argv in enumerate(argvs):
        folder = cwd / f"p{n}"
        folder.mkdir()
        processes.append((folder, start_fanout(fake, folder, *argv)))
    results = []
    for folder, process in processes:
        try:
            code = process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        results.append((code, (folder / "fanout.err").read_text()))
    return results


def one_winner(results: list[tuple[int, str]], thread: str) -> None:
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert f"thread {thread!r} {BUSY}" in loser
    assert "Traceback" not in loser


def test_two_simultaneous_starts_on_one_thread_exactly_one_wins(
    fake_llm: FakeLLM, tmp_path: Path, db: str
) -> None:
    fake_llm.add_rules({"schema": "Sections", "latency": HOLD, "times": 1})
    thread = new_thread("two-starts")
    argv = ["article", "tides", "--thread", thread, "--db", db]

    results = run_both(fake_llm, tmp_path, argv, argv)

    one_winner(results, thread)
    assert article_calls(fake_llm.log()) == {"plan": 1, "s1": 1, "s2": 1, "s3": 1}
    assert branches(db, thread) == 0


def test_two_resumes_after_kill_9_run_the_rest_once(
    fake_llm: FakeLLM, tmp_path: Path, db: str
) -> None:
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4},
        *hang_once("Fake questions 3 for", "Fake questions 4 for"),
    )
    thread = new_thread("two-resumes")
    run_and_kill(
        fake_llm, tmp_path, db, ["research", "tides", "--thread", thread], "research",
        "research_question", done=2,
    )  # fmt: skip
    fake_llm.reset()
    fake_llm.add_rules({"match": "Fake questions 3 for", "latency": HOLD, "times": 1})
    resume = ["resume", thread, "--db", db]

    results = run_both(fake_llm, tmp_path, resume, resume)

    one_winner(results, thread)  # the killed holder left no lock behind
    assert research_calls(fake_llm.log()) == {"q3": 1, "q4": 1, "writer": 1}
    assert branches(db, thread) == 0


def test_a_resume_while_the_run_is_live_is_refused(
    fake_llm: FakeLLM, tmp_path: Path, db: str
) -> None:
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4},
        {"match": "Fake questions 1 for", "latency": HOLD, "times": 1},
    )
    thread = new_thread("live")
    live = start_fanout(fake_llm, tmp_path, "research", "tides", "--thread", thread, "--db", db)
    try:
        wait_for_results(db, "research", thread, "research_question", 3)
        resumed = run_both(fake_llm, tmp_path, ["resume", thread, "--db", db])
        assert live.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "fanout.err").read_text()
    finally:
        if live.poll() is None:
            live.kill()

    ((code, err),) = resumed
    assert code == 2 and BUSY in err
    assert research_calls(fake_llm.log()) == {"plan": 1, "q1": 1, "q2": 1, "q3": 1, "q4": 1} | {
        "writer": 1
    }
    assert branches(db, thread) == 0


async def test_the_lock_is_taken_once_and_free_again_after(db: str) -> None:
    async with thread_lock(db, "t"):
        with pytest.raises(ThreadBusyError, match="'t' is running elsewhere"):
            async with thread_lock(db, "t"):
                pass
        async with thread_lock(db, "another thread"):
            pass
    async with thread_lock(db, "t"):
        pass
