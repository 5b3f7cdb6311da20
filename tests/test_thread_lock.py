"""One writer per thread: two processes never run one thread at once, and a dead one frees it."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from graphs.research import graph as research
from langgraph_fanout.llm.call import current_node, with_admission
from langgraph_fanout.persistence.checkpointer import aopen_checkpointer, open_checkpointer
from langgraph_fanout.persistence.thread_lock import ThreadBusyError, thread_lock
from langgraph_fanout.server.graphs import SERVED
from state.context import ConfigurationError
from state.inputs import InvalidInputError
from tests.fake_llm import FakeLLM
from tests.fanout_cli import RUN_TIMEOUT, start_fanout, wait_for_results
from tests.langgraph_server import Server, server_env, start_server
from tests.test_durability import (
    article_calls,
    hang_once,
    new_thread,
    research_calls,
    run_and_kill,
)

pytestmark = [pytest.mark.cli, pytest.mark.timeout(180)]
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
    """Start every ``fanout`` command at once (each in its own folder); exit codes and stderr.

    With two commands, the held request of a ``hold`` rule (the winner's) is released once one
    command has exited (the loser, refused while the winner held the thread).
    """
    processes = []
    for n, argv in enumerate(argvs):
        folder = cwd / f"p{n}"
        folder.mkdir()
        processes.append((folder, start_fanout(fake, folder, *argv)))
    if len(processes) > 1:
        deadline = time.monotonic() + RUN_TIMEOUT
        while all(p.poll() is None for _, p in processes):
            if time.monotonic() > deadline:
                fake.release()
                errs = "\n".join((folder / "fanout.err").read_text() for folder, _ in processes)
                raise AssertionError(f"neither fanout exited; stderr:\n{errs}")
            time.sleep(0.05)
        fake.release()
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
    fake_llm.add_rules({"schema": "Sections", "hold": True, "times": 1})
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
    fake_llm.add_rules({"match": "Fake questions 3 for", "hold": True, "times": 1})
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
        {"match": "Fake questions 1 for", "hold": True, "times": 1},
    )
    thread = new_thread("live")
    live = start_fanout(fake_llm, tmp_path, "research", "tides", "--thread", thread, "--db", db)
    try:
        wait_for_results(db, "research", thread, "research_question", 3)
        resumed = run_both(fake_llm, tmp_path, ["resume", thread, "--db", db])
        fake_llm.release()  # the live run's last researcher answers once the resume was refused
        assert live.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "fanout.err").read_text()
    finally:
        if live.poll() is None:
            live.kill()

    ((code, err),) = resumed
    assert code == 2 and BUSY in err
    assert research_calls(fake_llm.log()) == {
        "plan": 1,
        "q1": 1,
        "q2": 1,
        "q3": 1,
        "q4": 1,
    } | {"writer": 1}
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


# --- the server's runs take the same lock -------------------------------------------------------


@pytest.fixture
def crashed(fake_llm: FakeLLM, tmp_path: Path, db: str) -> str:
    """A research thread that ``fanout`` ran, killed -9 with questions 1-2 answered: its id."""
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "items": 4},
        *hang_once("Fake questions 3 for", "Fake questions 4 for"),
    )
    thread = str(uuid.uuid4())  # the server takes only UUIDs
    argv = ["research", "tides", "--thread", thread]
    run_and_kill(fake_llm, tmp_path, db, argv, "research", "research_question", done=2)
    fake_llm.reset()
    return thread


@pytest.fixture
def server(fake_llm: FakeLLM, tmp_path: Path, db: str) -> Iterator[Server]:
    """``langgraph dev`` on the test's database (FANOUT_DB), in a folder of its own."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    running = start_server(workdir, server_env(fake_llm, db))  # type: ignore[arg-type]
    try:
        yield running
    finally:
        running.kill()


def wait_for_request(fake: FakeLLM, match: str, timeout: float = 30.0) -> None:
    """Wait until a request holding ``match`` reached the fake LLM."""
    deadline = time.monotonic() + timeout
    while not any(match in r["last_user"] for r in fake.log()):
        assert time.monotonic() < deadline, f"no request with {match!r} within {timeout:g}s"
        time.sleep(0.05)


@pytest.mark.server
@pytest.mark.parametrize("first", ["fanout", "server", "both at once"])
def test_a_server_run_and_fanout_resume_on_one_thread_run_it_once(
    fake_llm: FakeLLM, tmp_path: Path, db: str, crashed: str, server: Server, first: str
) -> None:
    # The thread as the README says: registered with the server, then continued there.
    client = server.sync_client()
    client.threads.create(
        thread_id=crashed, if_exists="do_nothing", metadata={"graph_id": "research"}
    )
    # The first to take the thread's lock is held at its researcher until the other arrived.
    fake_llm.add_rules({"match": "Fake questions 3 for", "hold": True, "times": 1})
    resume = ["resume", crashed, "--db", db]

    if first == "fanout":
        cli = start_fanout(fake_llm, tmp_path, *resume)
        wait_for_request(fake_llm, "Fake questions 3 for")
        run = client.runs.create(crashed, "research", input=None)  # waits for the thread
        fake_llm.release()
    else:
        run = client.runs.create(crashed, "research", input=None)
        if first == "server":
            wait_for_request(fake_llm, "Fake questions 3 for")
        cli = start_fanout(fake_llm, tmp_path, *resume)
        if first == "server":
            cli.wait(timeout=RUN_TIMEOUT)  # refused while the server holds the thread
        else:
            wait_for_request(fake_llm, "Fake questions 3 for")  # one of them holds it
        fake_llm.release()
    try:
        code = cli.wait(timeout=RUN_TIMEOUT)
    finally:
        if cli.poll() is None:
            cli.kill()
    output = client.runs.join(crashed, run["run_id"])
    stderr = (tmp_path / "fanout.err").read_text()

    assert research_calls(fake_llm.log()) == {"q3": 1, "q4": 1, "writer": 1}, stderr
    assert isinstance(output, dict) and output.get("task_count") == 4, (
        output,
        server.output()[-3000:],
    )
    assert client.runs.get(crashed, run["run_id"])["status"] == "success"
    if first == "fanout":
        assert code == 0, stderr
    elif first == "server":
        assert code == 2 and f"thread {crashed!r} {BUSY}" in stderr, stderr
    else:  # whichever took the lock first ran it; the other waited, or was refused
        assert code in (0, 2), stderr
    assert "Traceback" not in stderr
    assert branches(db, crashed) == 0


RUN_STYLES = {
    "ainvoke": lambda graph, config: graph.ainvoke(None, config),
    "astream": lambda graph, config: _drain(graph.astream(None, config)),
    "astream_events": lambda graph, config: _drain(graph.astream_events(None, config)),
}


async def _drain(parts: AsyncIterator[Any]) -> None:
    async for _ in parts:
        pass


@pytest.mark.parametrize("style", RUN_STYLES)
async def test_a_served_run_waits_for_its_thread_then_gives_up_clearly(
    fake_llm: FakeLLM, db: str, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    monkeypatch.setenv("FANOUT_DB", db)
    monkeypatch.setenv("FANOUT_LOCK_WAIT", "0.6")
    thread = new_thread("served")
    config = RunnableConfig(configurable={"thread_id": thread})
    async with aopen_checkpointer(db) as saver:
        served = SERVED["evaluation"].copy(update={"checkpointer": saver})
        await served.ainvoke({"text": "Tea."}, config)  # a finished run: resuming it is quick
        fake_llm.reset()

        async with thread_lock(db, thread):  # fanout runs the thread
            started = time.monotonic()
            with pytest.raises(ThreadBusyError, match=f"'{thread}' {BUSY}.*after 0.6 s"):
                await RUN_STYLES[style](served, config)
            assert 0.6 <= time.monotonic() - started < 5

        async def release_soon() -> None:
            async with thread_lock(db, thread):
                await asyncio.sleep(0.5)

        holder = asyncio.create_task(release_soon())
        await asyncio.sleep(0.1)
        monkeypatch.setenv("FANOUT_LOCK_WAIT", "30")
        started = time.monotonic()
        await RUN_STYLES[style](served, config)  # waits for the holder, then runs
        assert 0.3 < time.monotonic() - started < 10
        await holder
    assert fake_llm.log() == []  # nothing was left to run


async def test_every_llm_call_awaits_the_admission_when_each_step_runs_in_a_new_task(
    fake_llm: FakeLLM,
) -> None:
    """langgraph-api steps a run's stream with each ``anext`` in a task of its own
    (``wait_if_not_done``): the calls of every step, not only the first, await the admission
    by which a run that is not sure it still holds its thread holds them back."""
    from langgraph_api.asyncio import ValueEvent, wait_if_not_done

    admitted: list[str] = []

    async def admit() -> None:
        admitted.append(current_node())

    fake_llm.add_rules({"match": "Topic: Tides", "schema": "ResearchPlan", "items": 4})
    config = with_admission(RunnableConfig(), admit)
    stream = research.astream({"topic": "Tides"}, config, stream_mode="updates")
    done, end = ValueEvent(), object()
    steps = 0
    while await wait_if_not_done(anext(stream, end), done) is not end:
        steps += 1
    assert steps >= 3  # plan, researchers, writer: each in a task of its own
    assert len(fake_llm.log()) == 6
    assert Counter(admitted) == {"plan_research": 1, "research_question": 4, "write_report": 1}


async def test_a_served_run_checks_its_input_before_waiting_for_the_thread(
    fake_llm: FakeLLM, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_DB", db)
    config = RunnableConfig(configurable={"thread_id": "busy"})
    async with aopen_checkpointer(db) as saver, thread_lock(db, "busy"):
        served = SERVED["research"].copy(update={"checkpointer": saver})
        with pytest.raises(InvalidInputError, match="topic: must not be empty"):
            await served.ainvoke({"topic": " "}, config)  # at once: FANOUT_LOCK_WAIT is 60


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
async def test_a_bad_lock_wait_is_a_configuration_error(
    db: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FANOUT_DB", db)
    monkeypatch.setenv("FANOUT_LOCK_WAIT", value)
    async with aopen_checkpointer(db) as saver:
        served = SERVED["evaluation"].copy(update={"checkpointer": saver})
        with pytest.raises(ConfigurationError, match=f"FANOUT_LOCK_WAIT must be .* got '{value}'"):
            await served.ainvoke({"text": "Tea."}, {"configurable": {"thread_id": "t"}})


@pytest.mark.postgres
async def test_a_postgresql_server_with_a_sqlite_fanout_db_is_refused(
    fake_llm: FakeLLM, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_DB", str(tmp_path / "local.sqlite"))  # each replica its own
    async with AsyncPostgresSaver.from_conn_string(postgres_url) as saver:  # as Aegra has
        served = SERVED["evaluation"].copy(update={"checkpointer": saver})
        with pytest.raises(ConfigurationError, match="keeps its threads in PostgreSQL"):
            await served.ainvoke({"text": "Tea."}, {"configurable": {"thread_id": "t"}})
    assert fake_llm.log() == []
