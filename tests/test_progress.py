"""The CLI's progress display says "retrying" exactly when the retry policy will retry."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
import uuid

import pytest
from rich.console import Console

from graphs.evaluation import graph as evaluation
from langgraph_fanout.cli.progress import RunProgress, short_label
from langgraph_fanout.llm.retry import LLM_ATTEMPTS, MalformedOutputError
from nodes.prompts import CRITERIA
from state.context import ConfigurationError, Context

SAFETY = CRITERIA["safety"]


def _events(progress: RunProgress, node: str) -> list[str]:
    """The events the progress log printed for ``node``, in order (stamps and causes cut)."""
    lines = progress.console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    found = [re.sub(r"^\s*[\d.]+s ", "", line) for line in lines]
    return [line.split(": ", 1)[1].split(" (")[0] for line in found if line.startswith(node + ":")]


def _progress() -> RunProgress:
    return RunProgress(Console(file=io.StringIO(), force_terminal=False, width=200))


async def test_a_malformed_reply_shows_retrying_then_done(fake_llm) -> None:
    fake_llm.add_rules({"match": SAFETY, "fault": "invalid_json", "times": 1})
    progress = _progress()

    await evaluation.ainvoke({"text": "Lemonade."}, {"callbacks": [progress]})

    assert _events(progress, "evaluate_safety") == ["started", "retrying", "attempt 2", "done"]
    assert _events(progress, "evaluate_tone") == ["started", "done"]


async def test_the_last_attempt_shows_failed_not_retrying(fake_llm) -> None:
    fake_llm.add_rules({"match": SAFETY, "fault": "invalid_json"})
    progress = _progress()

    with pytest.raises(MalformedOutputError):
        await evaluation.ainvoke({"text": "Lemonade."}, {"callbacks": [progress]})

    retries = [e for n in range(2, LLM_ATTEMPTS + 1) for e in ("retrying", f"attempt {n}")]
    assert _events(progress, "evaluate_safety") == ["started", *retries, "failed"]
    assert [t.node for t in progress.failed()] == ["evaluate_safety"]


async def test_an_error_the_policy_does_not_retry_shows_failed_at_once(fake_llm) -> None:
    progress = _progress()

    with pytest.raises(ConfigurationError):  # found inside each branch: never retried
        await evaluation.ainvoke(
            {"text": "Lemonade."},
            {"callbacks": [progress]},
            context=Context(evaluator_model="nonexistentprovider:foo"),
        )

    for branch in ("evaluate_safety", "evaluate_tone", "evaluate_audience_fit"):
        events = _events(progress, branch)
        assert "retrying" not in events
        assert events[0] == "started" and events[-1] in ("failed", "cancelled"), events
    assert progress.failed()


def _start_and_end(progress: RunProgress, task_id: str) -> None:
    run_id = uuid.uuid4()
    metadata = {"langgraph_node": "research_question", "langgraph_checkpoint_ns": f"rq:{task_id}"}
    progress.on_chain_start(None, {}, run_id=run_id, metadata=metadata, name="research_question")
    progress.on_chain_end({}, run_id=run_id)


def test_with_a_checkpointer_a_task_is_done_once_its_result_is_committed() -> None:
    progress = RunProgress(Console(file=io.StringIO(), force_terminal=False), durable=True)
    with progress:
        _start_and_end(progress, "a")
        _start_and_end(progress, "b")
        assert [t.status for t in progress.tasks.values()] == ["saving", "saving"]
        progress.saved("b")  # what the saver says once b's writes are committed
        assert [t.status for t in progress.tasks.values()] == ["saving", "done"]
        assert _events(progress, "research_question") == ["started", "started", "done"]
    # The run ended normally: LangGraph waited for every write (a has none to save).
    assert [t.status for t in progress.tasks.values()] == ["done", "done"]


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ("Tides", "Tides"),
        (
            "Spring tides and neap tides explained at length (+19 more)",
            "Spring tides and… (+19 more)",
        ),
        ("Spring tides and neap tides explained at length", "Spring tides and neap tides…"),
        ("line\nbreak", "line\\nbreak"),
    ],
)
def test_a_long_label_is_cut_with_an_ellipsis_keeping_its_count(label: str, shown: str) -> None:
    assert short_label(label, 28) == shown
    assert len(short_label(label, 28)) <= 28


def test_a_worker_logs_a_cancelled_attempt_in_one_line_and_other_errors_with_their_traceback():
    from langgraph_fanout.cli.worker import OneLineFormatter

    formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")

    def record(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            return logging.LogRecord(
                "temporalio.activity", logging.WARNING, __file__, 1,
                "Completing activity as failed (%s)", ("{'attempt': 1}",), sys.exc_info(),
            )  # fmt: skip

    cancelled = formatter.format(record(asyncio.CancelledError("Activity cancelled")))
    failed = formatter.format(record(ValueError("bad\nreply")))

    assert cancelled == (
        "WARNING temporalio.activity: Completing activity as failed ({'attempt': 1}): "
        "CancelledError: Activity cancelled"
    )
    assert failed.startswith("WARNING temporalio.activity: Completing activity as failed (")
    assert "Traceback (most recent call last)" in failed and "ValueError: bad" in failed


@pytest.mark.parametrize("seen", ["waiting", "running"])
def test_a_temporal_retry_says_why_whether_it_was_seen_waiting_or_running(seen: str) -> None:
    """The watcher may see a retried activity waiting for its attempt, or (its looks spaced,
    a worker quick) only once the attempt runs: either way the log says why it was retried."""
    from langgraph_fanout.cli.temporal import TemporalProgress
    from langgraph_fanout.temporal.progress import ActivityState

    progress = TemporalProgress(Console(file=io.StringIO(), force_terminal=False, width=200))
    why = "activity Heartbeat timeout"
    progress.update(ActivityState(key="9", node="research_question", label="", status="running"))
    if seen == "waiting":
        progress.update(
            ActivityState("9", "research_question", "", status="retrying", attempt=2, error=why)
        )
    progress.update(
        ActivityState("9", "research_question", "", status="running", attempt=2, error=why)
    )
    progress.update(ActivityState("9", "research_question", "", status="done", attempt=2))

    shown = ["started", "retrying", "done"] if seen == "waiting" else [
        "started", "retrying", "attempt 2", "done"
    ]  # fmt: skip
    assert _events(progress, "research_question") == shown
    assert f"retrying ({why})" in progress.console.file.getvalue()  # type: ignore[attr-defined]
