"""Workers' tokens as they are written: ``stream_mode="messages"`` and the CLI's live table."""

from __future__ import annotations

import io
import time
import uuid
from collections import defaultdict
from typing import Any

from langchain_core.messages import AIMessageChunk
from rich.console import Console

from graphs.article import graph as article
from graphs.research import graph as research
from langgraph_fanout.cli.progress import RunProgress, Task
from langgraph_fanout.llm.call import STREAM_SLOTS, StreamSlots
from state.context import Context

# --- Python: astream(..., stream_mode="messages") ---------------------------------------------


async def test_messages_carry_each_workers_tokens_labelled_by_its_metadata(fake_llm) -> None:
    chunks: dict[str, list[str]] = defaultdict(list)
    metadata: dict[str, dict[str, Any]] = {}
    final: dict[str, Any] = {}

    async for mode, data in article.astream(
        {"topic": "Tides"}, stream_mode=["messages", "values"], context=Context(max_sections=3)
    ):
        if mode == "values":
            final = data
            continue
        chunk, meta = data
        task = meta["langgraph_checkpoint_ns"]  # one per node run: tells the workers apart
        chunks[task].append(chunk.text)
        metadata[task] = meta

    workers = {k: m for k, m in metadata.items() if m["langgraph_node"] == "write_section"}
    assert len(workers) == 3
    written = {s["name"]: s["content"] for s in final["completed_sections"]}
    for task, meta in workers.items():
        assert meta["fanout_role"] == "worker" and meta["fanout_structured"] is False
        assert len(chunks[task]) > 3  # streamed, not one message at the end
        assert "".join(chunks[task]) == written[meta["section"]]
    (planner,) = [m for m in metadata.values() if m["langgraph_node"] == "plan_sections"]
    assert planner["fanout_role"] == "planner" and planner["fanout_structured"] is True


async def test_research_workers_are_labelled_by_their_question(fake_llm) -> None:
    labels = set()
    async for _chunk, meta in research.astream({"topic": "Tides"}, stream_mode="messages"):
        if meta["langgraph_node"] == "research_question":
            labels.add(meta["question"])

    assert labels == {f"Fake questions {i} for: Topic: Tides" for i in (1, 2, 3)}


async def test_tokens_arrive_while_the_worker_is_still_writing(fake_llm) -> None:
    fake_llm.add_rules({"match": "Article topic", "chunk_delay": 0.2})
    first_text: dict[str, float] = {}

    async for chunk, meta in article.astream(
        {"topic": "Tides"}, stream_mode="messages", context=Context(max_sections=2)
    ):
        if meta["langgraph_node"] == "write_section" and chunk.text:
            first_text.setdefault(meta["section"], time.monotonic())

    workers = [r for r in fake_llm.log() if r["last_user"].startswith("Article topic")]
    assert len(workers) == len(first_text) == 2
    for record in workers:
        section = next(s for s in first_text if f"Section: {s}\n" in record["last_user"])
        # The fake's clock is this process's: the first words came before the reply ended.
        assert record["t_start"] < first_text[section] < record["t_end"]


# --- the CLI's live table --------------------------------------------------------------------


def live_progress(width: int = 120) -> RunProgress:
    console = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    return RunProgress(console)


def render(progress: RunProgress) -> list[str]:
    console = progress.console
    console.file = io.StringIO()
    console.print(progress._table())
    return console.file.getvalue().splitlines()


def row(lines: list[str], label: str) -> str:
    (line,) = [line for line in lines if label in line]
    return line


def start(progress: RunProgress, key: str, node: str, label: str = "") -> None:
    progress.tasks[key] = Task(node=node, label=label, started=time.monotonic())


def token(progress: RunProgress, key: str, text: str, structured: bool = False) -> None:
    meta = {"langgraph_checkpoint_ns": key, "fanout_structured": structured}
    progress.on_message(AIMessageChunk(content=text), meta)


def test_the_table_shows_the_last_line_each_worker_is_writing() -> None:
    progress = live_progress()
    start(progress, "w:1", "write_section", "Alpha")
    start(progress, "w:2", "write_section", "Beta")
    for piece in ["First line of Alpha.", "\nSecond li", "ne so far"]:
        token(progress, "w:1", piece)
    token(progress, "w:2", "Beta begins\n\n")

    lines = render(progress)

    assert row(lines, "Alpha").rstrip().endswith("running    1        0.00s    Second line so far")
    assert "First line" not in row(lines, "Alpha")
    assert row(lines, "Beta").rstrip().endswith("Beta begins")  # a trailing newline: last text


def test_a_long_line_shows_its_end_within_the_terminal() -> None:
    progress = live_progress(width=80)
    start(progress, "w:1", "write_section", "Alpha")
    token(progress, "w:1", "word " * 200 + "THE-END")

    line = row(render(progress), "Alpha")

    assert line.rstrip().endswith("word THE-END") and "…" in line
    assert len(line) <= 80


def test_a_structured_reply_shows_a_count_not_json() -> None:
    progress = live_progress()
    start(progress, "p:1", "plan_sections")
    for piece in ['{"sections": [', '{"name": "A"', "}]}"]:
        token(progress, "p:1", piece, structured=True)

    line = row(render(progress), "plan_sections")

    assert "JSON reply, 29 characters" in line and "{" not in line


def test_a_new_attempt_starts_a_new_reply() -> None:
    progress = live_progress()
    start(progress, "w:1", "write_section", "Alpha")
    token(progress, "w:1", "half a reply")
    meta = {"langgraph_node": "write_section", "langgraph_checkpoint_ns": "w:1"}
    progress.on_chain_start(None, {}, run_id=uuid.uuid4(), metadata=meta, name="write_section")

    assert progress.tasks["w:1"].attempts == 2
    assert progress.tasks["w:1"].writing(40) == ""


def test_messages_of_unknown_tasks_are_ignored() -> None:
    progress = live_progress()
    token(progress, "nobody:1", "text")
    progress.on_message(AIMessageChunk(content="x"), {})

    assert progress.tasks == {}


async def test_stream_slots_bound_how_many_calls_stream_at_once(fake_llm) -> None:
    fake_llm.configure(latency=0.3, default_items=5)  # all writers in flight at once
    streamed: dict[str, int] = defaultdict(int)
    token = STREAM_SLOTS.set(StreamSlots(2))
    try:
        async for _chunk, meta in article.astream(
            {"topic": "Tides"}, stream_mode="messages", context=Context(max_sections=5)
        ):
            if meta["langgraph_node"] == "write_section":
                streamed[meta["section"]] += 1
    finally:
        STREAM_SLOTS.reset(token)

    writers = [r for r in fake_llm.log() if r["last_user"].startswith("Article topic")]
    assert len(writers) == 5
    assert sum(r["stream"] for r in writers) == 2  # the others asked for a whole reply
    assert len(streamed) == 2  # the others are not in the stream at all
    assert min(streamed.values()) > 3  # token by token
    assert not any(r["stream"] for r in fake_llm.log() if r["schema"])  # JSON never streams


def test_workers_streaming_text_get_the_rows_first() -> None:
    progress = live_progress()
    for i in range(25):
        start(progress, f"w:{i}", "write_section", f"Worker {i:02}")
    for i in range(20, 25):  # the last five to start are the ones streaming
        token(progress, f"w:{i}", f"text of {i}")

    lines = render(progress)

    shown = [line for line in lines if "Worker" in line]
    assert len(shown) == 20
    for i in range(20, 25):
        assert row(lines, f"Worker {i}").rstrip().endswith(f"text of {i}")
    assert "0/25 done; 5 more not shown" in "\n".join(lines)
