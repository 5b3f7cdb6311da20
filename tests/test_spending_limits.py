"""Spending limits: no LLM call past ``max_llm_calls`` / ``max_total_tokens``; a pause, not an
error; a resume with a higher limit runs only the work that did not start.

Every count is the fake LLM's: the requests it received, retries included.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import uuid
from pathlib import Path
from typing import Any

import pexpect
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphs.article import builder as article_builder
from graphs.evaluation import builder as evaluation_builder
from graphs.research import builder as research_builder
from langgraph_fanout.llm.retry import CLIENT_RETRIES
from state.context import Context
from state.spending import RUN_KEY
from tests.fake_llm import FakeLLM
from tests.fanout_cli import fanout, json_result, start_fanout, wait_for_results
from tests.langgraph_server import Server
from tests.test_cli_review import PROMPT, finish, screen, spawn
from tests.test_durability import article_calls, hang_once, research_calls, wait_for_in_flight
from tests.test_thread_lock import one_winner, run_both

FOUR_QUESTIONS = {"schema": "ResearchPlan", "items": 4}
MINIMUM = {"plan": 1, "q1": 1, "q2": 1, "q3": 1, "q4": 1, "writer": 1}
"""A research run on four questions: its minimum of LLM calls."""


def limited(**limits: int) -> Context:
    return Context(model="openai:fake-model", **limits)


def thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"limits-{uuid.uuid4().hex[:8]}"}}


async def test_a_run_at_its_call_limit_pauses_and_a_higher_limit_finishes_it(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.add_rules(FOUR_QUESTIONS)
    graph = research_builder.compile(checkpointer=InMemorySaver())
    config = thread()

    paused = await graph.ainvoke({"topic": "tides"}, config, context=limited(max_llm_calls=3))

    assert research_calls(fake_llm.log()) == {"plan": 1, "q1": 1, "q2": 1}
    (pause,) = paused["__interrupt__"]
    assert pause.value["kind"] == "spending_limit"
    assert pause.value["spent"]["llm_calls"] == 3 and pause.value["spent"]["total_tokens"] > 0
    assert pause.value["limits"] == {"max_llm_calls": 3}
    assert pause.value["not_started"] == [
        f"research_question: Fake questions {n} for: Topic: tides" for n in (3, 4)
    ]
    state = await graph.aget_state(config)
    assert [f["question"][:16] for f in state.values["findings"]] == [
        "Fake questions 1",
        "Fake questions 2",
    ]  # the finished workers' results are saved

    again = await graph.ainvoke(Command(resume=True), config, context=limited(max_llm_calls=3))
    assert again["__interrupt__"][0].value["spent"]["llm_calls"] == 3  # the same limit: no call
    assert len(fake_llm.log()) == 3

    done = await graph.ainvoke(Command(resume=True), config, context=limited(max_llm_calls=6))

    assert "__interrupt__" not in done
    assert research_calls(fake_llm.log()) == MINIMUM
    assert [f["question"] for f in done["findings"]] == [
        f"Fake questions {n} for: Topic: tides" for n in (1, 2, 3, 4)
    ]  # plan order, the held-back ones included
    assert done["task_count"] == 4
    spent = (await graph.aget_state(config)).values["spent"]
    assert spent["llm_calls"] == 6


async def test_a_lone_node_at_the_limit_pauses_itself_and_goes_on_when_raised(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.add_rules(FOUR_QUESTIONS)
    graph = research_builder.compile(checkpointer=InMemorySaver())
    config = thread()

    paused = await graph.ainvoke({"topic": "tides"}, config, context=limited(max_llm_calls=5))
    (pause,) = paused["__interrupt__"]
    done = await graph.ainvoke(Command(resume=True), config, context=limited(max_llm_calls=6))

    assert pause.value["not_started"] == ["write_report"]
    assert research_calls(fake_llm.log()) == MINIMUM
    assert done["report"].startswith("Fake answer to: Topic: tides")


async def test_retries_count_as_calls(fake_llm: FakeLLM) -> None:
    """Under a call limit the client does not retry unseen: each request is a counted call."""
    fake_llm.add_rules(
        FOUR_QUESTIONS, {"match": "Fake questions 1 for", "fault": "500", "times": 2}
    )
    graph = research_builder.compile(checkpointer=InMemorySaver())
    config = thread()

    paused = await graph.ainvoke({"topic": "tides"}, config, context=limited(max_llm_calls=6))
    done = await graph.ainvoke(Command(resume=True), config, context=limited(max_llm_calls=8))

    assert CLIENT_RETRIES > 0  # without a limit the client would have retried by itself
    # plan, q1 (500), q2, q3, q4, q1 (500): six; q1's third attempt waits for the resume
    assert paused["__interrupt__"][0].value["spent"]["llm_calls"] == 6
    assert research_calls(fake_llm.log()) == MINIMUM | {"q1": 3}
    assert (await graph.aget_state(config)).values["spent"]["llm_calls"] == 8
    assert done["task_count"] == 4


async def test_the_token_limit_stops_new_calls_once_reached(fake_llm: FakeLLM) -> None:
    fake_llm.add_rules({"schema": "Sections", "items": 3})
    graph = article_builder.compile(checkpointer=InMemorySaver())
    config = thread()

    paused = await graph.ainvoke(
        {"topic": "tides"}, config, context=limited(max_total_tokens=1, max_sections=3)
    )

    (pause,) = paused["__interrupt__"]
    assert article_calls(fake_llm.log()) == {"plan": 1}  # its tokens reached the limit
    assert pause.value["limits"] == {"max_total_tokens": 1}
    assert len(pause.value["not_started"]) == 3
    done = await graph.ainvoke(
        Command(resume=True), config, context=limited(max_total_tokens=100_000, max_sections=3)
    )
    assert article_calls(fake_llm.log()) == {"plan": 1, "s1": 1, "s2": 1, "s3": 1}
    assert done["article"].count("## Fake name") == 3


async def test_parallel_branches_pause_once_and_only_the_held_back_ones_run_again(
    fake_llm: FakeLLM,
) -> None:
    graph = evaluation_builder.compile(checkpointer=InMemorySaver())
    config = thread()
    text = {"text": "A short text to judge."}

    paused = await graph.ainvoke(text, config, context=limited(max_llm_calls=2))
    done = await graph.ainvoke(Command(resume=True), config, context=limited(max_llm_calls=4))

    assert len(paused["__interrupt__"]) == 1  # one pause: one Command(resume=...) answers it
    assert len(paused["__interrupt__"][0].value["not_started"]) == 1
    assert len(fake_llm.log()) == 4  # three branches and the aggregator, none twice
    assert len(done["evaluations"]) == 3


@pytest.mark.parametrize("workflow", ["evaluation", "research"])
async def test_a_new_run_on_a_used_thread_counts_only_its_own_spending(
    fake_llm: FakeLLM, workflow: str
) -> None:
    """The first run's calls are not the second's: it pauses, shows and resumes on its own."""
    fake_llm.add_rules(FOUR_QUESTIONS)
    builder, input, minimum = {
        "evaluation": (evaluation_builder, {"text": "A short text to judge."}, 4),
        "research": (research_builder, {"topic": "tides"}, 6),
    }[workflow]
    graph = builder.compile(checkpointer=InMemorySaver())
    config = thread()
    await graph.ainvoke(input, config, context=limited())  # spends `minimum` calls
    fake_llm.reset()
    fake_llm.add_rules(FOUR_QUESTIONS)

    paused = await graph.ainvoke(input, config, context=limited(max_llm_calls=2))
    spent_at_pause = (await graph.aget_state(config)).values["spent"]["llm_calls"]
    done = await graph.ainvoke(Command(resume=True), config, context=limited(max_llm_calls=6))

    assert paused["__interrupt__"][0].value["spent"]["llm_calls"] == 2
    assert spent_at_pause == 2
    assert "__interrupt__" not in done
    assert len(fake_llm.log()) == minimum  # the second run: each call once, none held for good
    assert (await graph.aget_state(config)).values["spent"]["llm_calls"] == minimum


async def test_a_state_update_keeps_naming_the_run_that_spent_the_count(
    fake_llm: FakeLLM,
) -> None:
    """A resume goes on with the run its thread's latest checkpoint names (and that run's
    count): a state update (``update_state``, Studio's editor, the API) must not drop it."""
    fake_llm.add_rules(FOUR_QUESTIONS)
    saver = InMemorySaver()
    graph = research_builder.compile(checkpointer=saver)
    config = thread()

    await graph.ainvoke({"topic": "tides"}, config, context=limited(max_llm_calls=3))
    paused = (await saver.aget_tuple(config)).metadata[RUN_KEY]
    await graph.aupdate_state(config, {"topic": "tides"})
    updated = (await saver.aget_tuple(config)).metadata.get(RUN_KEY)

    assert updated == paused


def test_bad_limits_are_refused() -> None:
    for bad in (0, -1, "5", 1.5, True):
        with pytest.raises(ValueError):
            Context(max_llm_calls=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Context(max_total_tokens=bad)  # type: ignore[arg-type]


@pytest.mark.cli
def test_cli_pauses_with_exit_5_and_resume_with_a_higher_limit_finishes(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.add_rules(FOUR_QUESTIONS)

    paused = fanout(
        fake_llm, tmp_path, "research", "tides", "--thread", "t", "--max-llm-calls", "3"
    )
    listed = fanout(fake_llm, tmp_path, "runs", "--json")
    shown = json_result(fanout(fake_llm, tmp_path, "show", "t", "--json"))
    readable = fanout(fake_llm, tmp_path, "show", "t").stdout.splitlines()
    same = fanout(fake_llm, tmp_path, "resume", "t")
    done = fanout(fake_llm, tmp_path, "resume", "t", "--max-llm-calls", "6", "--json")
    refused = [
        fanout(fake_llm, tmp_path, "research", "x", "--max-llm-calls", value)
        for value in ("0", "-2", "three")
    ]

    assert paused.returncode == 5, paused.stderr
    assert paused.stdout == ""
    lines = paused.stderr.splitlines()
    assert "paused at the spending limit (max_llm_calls=3): 3 LLM calls started" in lines[-3]
    assert lines[-2].startswith("not started: research_question: Fake questions 3 for")
    assert lines[-1] == "finished work is saved; resume with: fanout resume t --max-llm-calls 6"
    assert [r["status"] for r in json.loads(listed.stdout)] == ["at limit"]
    assert (shown["status"], shown["limits"], shown["review"]) == (
        "at limit",
        {"max_llm_calls": 3},
        [],
    )
    assert shown["spent"]["llm_calls"] == 3
    assert "status: at limit" in readable
    assert any(
        re.fullmatch(r"spent: 3 LLM calls, \d+ tokens \(limits: max_llm_calls=3\)", line)
        for line in readable
    ), readable
    assert same.returncode == 5  # the same limit: paused again, no call
    output = json_result(done)
    assert research_calls(fake_llm.log()) == MINIMUM
    assert output["task_count"] == 4
    assert all(r.returncode == 2 and "--max-llm-calls" in r.stderr for r in refused)


@pytest.mark.cli
def test_a_resume_killed_midway_then_two_at_once_run_the_rest_once(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """Paused at 3 calls; resumed with room for the rest and SIGKILLed while researcher 4 is in
    flight; then resumed by two commands at once: one runs what is left, the other is refused."""
    db = str(tmp_path / "runs.sqlite")
    fake_llm.add_rules(FOUR_QUESTIONS, *hang_once("Fake questions 4 for"))
    paused = fanout(
        fake_llm, tmp_path, "research", "tides", "--thread", "t", "--db", db, "--max-llm-calls", "3"
    )
    resume = ["resume", "t", "--db", db, "--max-llm-calls", "7"]
    killed = start_fanout(fake_llm, tmp_path, *resume)
    try:
        wait_for_results(db, "research", "t", "research_question", 1)  # researcher 3, resent
        wait_for_in_flight(fake_llm, 1)  # researcher 4
    finally:
        killed.kill()
    assert killed.wait(10) == -9
    fake_llm.add_rules({"match": "Fake questions 4 for", "hold": True, "times": 1})

    results = run_both(fake_llm, tmp_path, resume, resume)
    shown = json_result(fanout(fake_llm, tmp_path, "show", "t", "--db", db, "--json"))

    assert paused.returncode == 5, paused.stderr
    one_winner(results, "t")
    assert research_calls(fake_llm.log()) == {**MINIMUM, "q4": 2}  # in flight at the kill
    assert shown["status"] == "done"
    assert shown["spent"]["llm_calls"] == sum(MINIMUM.values()) + 1  # the call in flight too


@pytest.mark.cli
def test_a_call_in_flight_at_a_crash_counts_so_the_resume_stops_at_the_limit(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """A limit of 6, the minimum of a research run on four questions: SIGKILLed with
    researcher 4 in flight (the fifth call), the resume runs researcher 4 again as the sixth
    and pauses before the writer: 6 calls made in all, as the limit says."""
    db = str(tmp_path / "runs.sqlite")
    fake_llm.add_rules(FOUR_QUESTIONS, *hang_once("Fake questions 4 for"))
    run = ["research", "tides", "--thread", "t", "--db", db, "--max-llm-calls", "6"]
    killed = start_fanout(fake_llm, tmp_path, *run)
    try:
        wait_for_results(db, "research", "t", "research_question", 3)
        wait_for_in_flight(fake_llm, 1)  # researcher 4
    finally:
        killed.kill()
    assert killed.wait(10) == -9

    resumed = fanout(fake_llm, tmp_path, "resume", "t", "--db", db)

    assert resumed.returncode == 5, resumed.stderr
    assert "6 LLM calls started" in resumed.stderr
    expected = {**MINIMUM, "q4": 2}
    del expected["writer"]  # the seventh call: not made
    assert research_calls(fake_llm.log()) == expected


@pytest.mark.cli
def test_a_resume_stopped_by_ctrl_c_goes_on_with_the_command_it_prints(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """Paused at 3 calls; resumed with room for the rest (on a terminal, as a user types it)
    and stopped by Ctrl-C while researcher 4 is in flight: the command it prints finishes the
    run, under the raised limit."""
    db = str(tmp_path / "runs.sqlite")
    fake_llm.add_rules(FOUR_QUESTIONS, *hang_once("Fake questions 4 for"))
    paused = fanout(
        fake_llm, tmp_path, "research", "tides", "--thread", "t", "--db", db, "--max-llm-calls", "3"
    )
    child = spawn(fake_llm, tmp_path, "resume", "t", "--db", db, "--max-llm-calls", "7")
    wait_for_results(db, "research", "t", "research_question", 1)  # researcher 3, resent
    wait_for_in_flight(fake_llm, 1)  # researcher 4
    child.sendintr()
    code = finish(child)
    shown = screen(tmp_path)
    hint = re.search(r"resume with: fanout (resume .*)$", shown, flags=re.M)
    assert hint is not None, shown

    resumed = fanout(fake_llm, tmp_path, *shlex.split(hint[1]), "--json")

    assert paused.returncode == 5, paused.stderr
    assert code == 128 + signal.SIGINT, shown
    assert "Traceback" not in shown
    assert json_result(resumed)["task_count"] == 4
    assert research_calls(fake_llm.log()) == {**MINIMUM, "q4": 2}  # in flight at the Ctrl-C


def test_a_resume_counts_the_journaled_calls_of_every_task_that_did_not_finish() -> None:
    """Finished (wrote its spending), paused (an interrupt write only), crashed (no write):
    the journaled calls of the last two count, in the total and in their tasks' counts."""
    from langgraph_fanout.llm.spending import CALL_MARK, CALL_STARTED, Ledger

    spent = {"llm_calls": 2, "total_tokens": 50, "run": "r"}
    writes = [
        (f"n:done{CALL_MARK}1", CALL_STARTED, "r"),
        ("done", "spent", {"llm_calls": 1, "total_tokens": 9, "run": "r"}),
        (f"n:paused{CALL_MARK}1", CALL_STARTED, "r"),
        ("paused", "__interrupt__", [{"value": "limit"}]),
        (f"n:crashed{CALL_MARK}1", CALL_STARTED, "r"),
        (f"n:crashed{CALL_MARK}2", CALL_STARTED, "r"),
        (f"n:other{CALL_MARK}1", CALL_STARTED, "an earlier run"),
    ]

    ledger = Ledger.resumed("r", {"spent": spent}, writes, None)

    assert ledger.total == {"llm_calls": 6, "total_tokens": 59, "run": "r"}
    assert ledger.calls_of("n:paused") == 1 and ledger.calls_of("n:crashed") == 2
    assert ledger.calls_of("n:done") == 0  # its spending is in the total already


@pytest.mark.server
def test_over_the_api_the_pause_is_an_interrupt_and_a_resume_command_goes_on(
    langgraph_dev: Server, fake_llm: FakeLLM
) -> None:
    fake_llm.add_rules(FOUR_QUESTIONS)
    client = langgraph_dev.sync_client()
    thread_id = client.threads.create()["thread_id"]

    client.runs.wait(thread_id, "research", input={"topic": "tides"}, context={"max_llm_calls": 3})
    state = client.threads.get_state(thread_id)
    output = client.runs.wait(
        thread_id, "research", command={"resume": True}, context={"max_llm_calls": 6}
    )

    (pause,) = state["interrupts"]
    assert pause["value"]["kind"] == "spending_limit"
    assert pause["value"]["spent"]["llm_calls"] == 3
    assert research_calls(fake_llm.log()) == MINIMUM
    assert isinstance(output, dict) and output["task_count"] == 4


@pytest.mark.cli
def test_the_plan_review_shows_the_plan_against_the_limit(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.add_rules(FOUR_QUESTIONS)
    child = spawn(fake_llm, tmp_path, "research", "tides", "--review", "--max-llm-calls", "3")

    child.expect(PROMPT)
    shown = child.before
    child.sendline("run")
    child.expect(pexpect.EOF)
    child.close()

    assert "6 LLM calls planned, limit 3: 2 of 4 workers would not start" in shown
    assert child.exitstatus == 5  # and it did pause there
    assert research_calls(fake_llm.log()) == {"plan": 1, "q1": 1, "q2": 1}
