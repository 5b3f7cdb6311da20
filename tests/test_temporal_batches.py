"""Wide fan-outs on Temporal: workers batched into at most 50 activities, nothing run twice.

A batch records each finished task in its heartbeat details; a retried batch (a task that
failed, a worker that died) runs only the tasks it has no result for.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.temporal_cluster import temporal_binary

temporal_binary()  # skips the module (fails under CI) without the [temporal] extra

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402

from langgraph_fanout.persistence.task_results import TABLE, TaskResults  # noqa: E402
from langgraph_fanout.persistence.urls import DEFAULT_DB  # noqa: E402
from langgraph_fanout.temporal import finished_tasks  # noqa: E402
from langgraph_fanout.temporal.batches import MAX_WORKER_ACTIVITIES  # noqa: E402
from langgraph_fanout.temporal.client import start_run  # noqa: E402
from langgraph_fanout.temporal.finished_tasks import FinishedTasks  # noqa: E402
from langgraph_fanout.temporal.payloads import database_url  # noqa: E402
from state.context import Context  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.fanout_cli import fanout, json_result  # noqa: E402
from tests.temporal_cluster import kill, start_worker, wait_for, wait_until_ready  # noqa: E402
from tests.test_durability import wait_for_in_flight  # noqa: E402

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(240)]


def section_calls(log: list[dict[str, Any]]) -> Counter[int]:
    """Requests per section number, from the section writers' prompts."""
    found = (re.search(r"Section: Fake name (\d+) for", r["last_user"]) for r in log)
    return Counter(int(m[1]) for m in found if m)


async def writer_activities(client: Client, run_id: str) -> list[str]:
    """The summaries of the run's write_section activities, in the order scheduled."""
    handle = client.get_workflow_handle(run_id)
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "article.write_section":
                found.append(event.user_metadata.summary.data.decode())
    return found


async def only_hung_batch_left(client: Client, run_id: str) -> bool:
    """One writer activity still open on the server, with a finished task in its heartbeat.

    The fake answering a call is not the worker reporting it: a kill in between would rerun
    a finished section.
    """
    description = await client.get_workflow_handle(run_id).describe()
    open_writers = [
        pending
        for pending in description.raw_description.pending_activities
        if pending.activity_type.name == "article.write_section"
    ]
    if len(open_writers) != 1:
        return False
    beat = await client.data_converter.decode(open_writers[0].heartbeat_details.payloads)
    return bool(beat and beat[0])  # [progress: the finished tasks, what the batch spent]


def saved_tasks(cwd: Path) -> list[bytes]:
    """The finished tasks the workers of ``cwd`` hold in their database (the default one)."""
    database = cwd / DEFAULT_DB
    if not database.is_file():
        return []
    with sqlite3.connect(database) as connection:
        try:
            rows = connection.execute(f"select data from {TABLE}").fetchall()
        except sqlite3.OperationalError:  # no table yet
            return []
    connection.close()
    return [data for (data,) in rows]


async def sixty_sections_w1_killed(
    fake_llm: FakeLLM,
    address: str,
    client: Client,
    task_queue: str,
    cwd: Path,
    before_kill: Callable[[str], Awaitable[None]],
) -> tuple[str, dict[str, Any]]:
    """An article of 60 sections (30 batches of 2) on worker w1, SIGKILLed once
    ``before_kill(run id)`` returns; worker w2 finishes the run. The run's id and output."""
    context = Context(model="openai:fake-model", max_sections=60)
    worker = start_worker(fake_llm, cwd, address, task_queue, "w1")
    fresh = None
    try:
        wait_until_ready(cwd, "w1", worker)
        handle = await start_run(
            client, "article", {"topic": "tides"}, context, task_queue=task_queue
        )
        await before_kill(handle.id)
        kill(worker)
        fresh = start_worker(fake_llm, cwd, address, task_queue, "w2")
        output: dict[str, Any] = await handle.result()
    finally:
        for process in (worker, *([fresh] if fresh else [])):
            kill(process)
    return handle.id, output


async def test_a_wide_fan_out_is_batched_with_the_output_of_an_in_process_run(
    fake_llm: FakeLLM, address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    command = ("article", "tides", "--max-sections", "120", "--json")
    fake_llm.add_rules({"schema": "Sections", "items": 120})
    local = json_result(fanout(fake_llm, tmp_path, *command))
    fake_llm.reset()
    fake_llm.add_rules({"schema": "Sections", "items": 120})
    worker = start_worker(fake_llm, tmp_path, address, task_queue, "w1")
    try:
        wait_until_ready(tmp_path, "w1", worker)
        remote = json_result(
            fanout(fake_llm, tmp_path, *command, "--temporal", address, "--task-queue", task_queue)
        )
    finally:
        kill(worker)

    assert {k: v for k, v in remote.items() if k != "thread_id"} == {
        k: v for k, v in local.items() if k != "thread_id"
    }
    batches = await writer_activities(client, remote["thread_id"])
    assert len(batches) == 40 <= MAX_WORKER_ACTIVITIES  # 120 sections, 3 per activity
    assert batches[0] == '"Fake name 1 for: Topic: tides (+2 more)"'
    assert section_calls(fake_llm.log()) == Counter(range(1, 121))  # each section once


async def test_a_failed_task_reruns_alone_and_a_killed_worker_loses_no_finished_task(
    fake_llm: FakeLLM, address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules(
        {"schema": "Sections", "items": 60},  # 30 activities of 2 sections
        {"match": "Section: Fake name 5 for", "fault": "empty", "times": 1},  # retryable
        {"match": "Section: Fake name 2 for", "fault": "hang", "times": 1},  # until killed
    )

    async def when_section_1_is_reported(run_id: str) -> None:
        await wait_for(
            "every section but the hung one",
            lambda: sum(section_calls(fake_llm.log()).values()) >= 61,
        )
        wait_for_in_flight(fake_llm, 1)
        await wait_for("the other batches reported", lambda: only_hung_batch_left(client, run_id))

    # The killed worker's batch (sections 1 and 2) had section 1 done and 2 in flight.
    run_id, output = await sixty_sections_w1_killed(
        fake_llm, address, client, task_queue, tmp_path, when_section_1_is_reported
    )

    calls = section_calls(fake_llm.log())
    print(f"\nsections called twice: {sorted(n for n, c in calls.items() if c > 1)}")
    assert calls == Counter(range(1, 61)) + Counter([2, 5])  # only the failed and the lost
    assert len(output["completed_sections"]) == 60
    assert [s["name"] for s in output["completed_sections"]] == [
        f"Fake name {n} for: Topic: tides" for n in range(1, 61)
    ]
    assert "started article.write_section" in (tmp_path / "w2.err").read_text()
    # Every call counts, the failed and the lost attempts' too (each batch carries its
    # attempts' count in its heartbeats): what the fake saw.
    shown = json_result(fanout(fake_llm, tmp_path, "show", run_id, "--json", "--temporal", address))
    assert shown["usage"]["llm_calls"] == len(fake_llm.log()) == 63


async def test_a_task_finished_between_two_heartbeats_of_a_killed_worker_runs_once(
    fake_llm: FakeLLM, address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    fake_llm.add_rules(
        {"schema": "Sections", "items": 60},  # 30 activities of 2 sections
        {"match": "Section: Fake name 2 for", "fault": "hang", "times": 1},  # until killed
    )

    async def when_59_sections_are_saved(run_id: str) -> None:
        # Section 1 among them; the heartbeat that would record it leaves up to 2 s later
        # (the first of its batch's attempt went with its first call): killed in between.
        await wait_for("59 sections saved", lambda: len(saved_tasks(tmp_path)) == 59)

    run_id, output = await sixty_sections_w1_killed(
        fake_llm, address, client, task_queue, tmp_path, when_59_sections_are_saved
    )

    calls = section_calls(fake_llm.log())
    assert calls == Counter(range(1, 61)) + Counter([2])  # only the one in flight, twice
    assert [s["name"] for s in output["completed_sections"]] == [
        f"Fake name {n} for: Topic: tides" for n in range(1, 61)
    ]
    assert len(saved_tasks(tmp_path)) == 60  # one a section, kept for an hour
    # What the killed attempt spent counts, section 1's tokens too (in its row, not in a
    # heartbeat): the tokens of the same article run in this process.
    shown = json_result(fanout(fake_llm, tmp_path, "show", run_id, "--json", "--temporal", address))
    assert shown["usage"]["llm_calls"] == len(fake_llm.log()) == 62
    local = json_result(
        fanout(fake_llm, tmp_path, "article", "tides", "--max-sections", "60", "--json")
    )
    assert shown["usage"]["total_tokens"] == local["usage"]["total_tokens"] > 0


async def test_a_locked_database_costs_a_batch_no_task_and_one_warning(
    client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(finished_tasks, "WAIT", 0.3)
    database = str(database_url(client.data_converter))
    sqlite3.connect(database).close()
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("begin exclusive")  # another process in the middle of a long write

    async def batch_of_two() -> dict[int, Any]:
        finished = FinishedTasks(2)
        for index in range(2):
            await finished.save(index, {"completed_sections": [{"name": f"S{index}"}]})
        holder.execute("rollback")  # the database is free again: the writes go through
        return await TaskResults.of(database).read(finished.batch)

    started = time.monotonic()
    try:
        saved = await ActivityEnvironment(client=client).run(batch_of_two)
    finally:
        holder.close()

    assert time.monotonic() - started < 10  # each save gave up after WAIT, not SQLite's 30 s
    warnings = [r for r in caplog.records if "may run again" in r.getMessage()]
    assert len(warnings) == 1
    assert "did not answer within 0.3 s" in warnings[0].getMessage()
    assert 0 in saved  # written once the lock was gone
