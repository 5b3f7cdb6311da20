"""Live progress of a run on stderr: which branches and workers run, finish, retry or fail.

With a checkpointer a task is shown "done" only once its result is committed (until then,
"saving"), so whatever the view says is done is not run again by a resume after a crash.

On a terminal the live table also shows what each LLM call is writing: the last line of a
worker's text as its tokens stream in (``stream_mode="messages"``, fed to
:meth:`RunProgress.on_message`), or the size of a structured reply (a plan, a verdict),
which is JSON for a parser, not text to read (and is not streamed:
``langgraph_fanout/llm/models.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import UsageMetadataCallbackHandler
from langgraph.errors import GraphInterrupt
from langgraph.types import RetryPolicy
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from langgraph_fanout.cli.terminal import printable
from langgraph_fanout.llm.retry import LLM_RETRY
from langgraph_fanout.workflows import task_label

LABEL_CHARS = 48
LINE_CHARS = 200
"""How much of the end of a worker's current line is kept for the live table."""
MIN_WRITING = 12
"""Narrowest "writing" column worth showing."""
MAX_ROWS = 20
STYLES = {
    "running": "yellow",
    "saving": "blue",
    "paused": "cyan",
    "held": "cyan",
    "done": "green",
    "retrying": "magenta",
    "failed": "bold red",
    "cancelled": "dim",
}


@dataclass
class Task:
    """One node execution (a branch, a worker, a planner...) as seen from its callbacks."""

    node: str
    label: str
    started: float
    status: str = "running"
    attempts: int = 1
    finished: float | None = None
    error: str = ""
    tail: str = ""
    """The end of the text streamed so far (a little more than one line)."""
    chunks: int = 0
    chars: int = 0
    structured: bool = False
    key: str = ""
    """The task's checkpoint namespace, ``node:task id``."""

    def elapsed(self, now: float) -> float:
        """Seconds since the first attempt started, until it finished (or now)."""
        return (self.finished or now) - self.started

    def writing(self, width: int) -> str:
        """The reply in ``width`` characters: the end of its last line, or a chunk count."""
        if self.structured:
            return f"JSON reply, {self.chars:,} characters"[:width]
        line = printable(self.tail.rstrip().rpartition("\n")[2], one_line=True)
        return line if len(line) <= width else "…" + line[len(line) - width + 1 :]


def short_label(label: str, width: int) -> str:
    """``label`` on one line in at most ``width`` characters.

    A long label loses the end of its text, marked with an ellipsis; a closing ``(...)``
    (a batch's "+19 more") is kept whole.
    """
    text = printable(label, one_line=True)
    if len(text) <= width:
        return text
    head, paren, tail = text.rpartition(" (")
    suffix = f" ({tail}" if paren and tail.endswith(")") and len(tail) < width // 2 else ""
    if suffix:
        text = head
    return text[: width - len(suffix) - 1].rstrip() + "…" + suffix


class RunProgress(UsageMetadataCallbackHandler):
    """Callback handler that tracks node tasks and sums token usage and LLM calls."""

    run_inline = True  # cheap bookkeeping: no thread hop per event

    def __init__(
        self, console: Console, retry: RetryPolicy = LLM_RETRY, *, durable: bool = False
    ) -> None:
        """``durable``: a task is done once :meth:`saved` says its result is committed."""
        super().__init__()
        self.console = console
        self.retry = retry
        self.durable = durable
        self.tasks: dict[str, Task] = {}
        self.llm_calls = 0
        self._runs: dict[UUID, str] = {}
        self._saving: dict[str, Task] = {}
        self._start = time.monotonic()
        self._live: Live | None = None

    # --- callbacks -------------------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note the start (or a new attempt) of a node task."""
        metadata = metadata or {}
        node = metadata.get("langgraph_node")
        if node is None or kwargs.get("name") != node:
            return
        key = str(metadata.get("langgraph_checkpoint_ns", run_id))
        self._runs[run_id] = key
        now = time.monotonic()
        if (task := self.tasks.get(key)) is None:
            self.tasks[key] = task = Task(
                node=node, label=task_label(node, inputs), started=now, key=key
            )
            self._log(task, "started")
        elif task.status == "paused":  # resumed after its interrupt, not a new attempt
            task.status, task.finished = "running", None
            self._log(task, "resumed")
        else:
            task.attempts += 1
            task.status, task.tail, task.chunks, task.chars = "running", "", 0, 0  # a new reply
            self._log(task, f"attempt {task.attempts}")

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Mark a node task done, or saving until its result is committed (``durable``).

        A worker that a spending limit kept from calling is held (``nodes/spending.py``).
        """
        if (task := self._task(run_id)) is None:
            return
        task.finished = time.monotonic()
        if isinstance(outputs, dict) and outputs.get("deferred"):
            task.status = "held"
            self._log(task, "held back (spending limit)")
        elif self.durable:
            task.status = "saving"
            self._saving[task.key.rpartition(":")[2]] = task  # "node:task id"
        else:
            self._done(task)

    def saved(self, task_id: str) -> None:
        """Mark the task ``task_id`` done: its result is committed (a saver's listener)."""
        if (task := self._saving.pop(task_id, None)) is not None:
            self._done(task)

    def _done(self, task: Task) -> None:
        task.status = "done"
        self._log(task, "done")

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Mark a node task paused, retrying, failed or cancelled.

        Retrying if the retry policy will try again; paused by its own ``interrupt()`` (a
        plan review); cancelled (not failed) when a sibling's failure or an interrupt stops it.
        """
        if (task := self._task(run_id)) is None:
            return
        if isinstance(error, GraphInterrupt):
            task.status, task.error = "paused", ""
        elif not isinstance(error, Exception):  # CancelledError, KeyboardInterrupt...
            task.status, task.error = "cancelled", ""
        else:
            task.error = f"{type(error).__name__}: {error}"
            task.status = "retrying" if self._will_retry(task, error) else "failed"
        if task.status != "retrying":
            task.finished = time.monotonic()
        self._log(task, task.status + (f" ({task.error[:120]})" if task.error else ""))

    def _will_retry(self, task: Task, error: Exception) -> bool:
        retry_on = self.retry.retry_on
        if task.attempts >= self.retry.max_attempts:
            return False
        if isinstance(retry_on, type):
            return isinstance(error, retry_on)
        if callable(retry_on):
            return bool(retry_on(error))
        return isinstance(error, tuple(retry_on))

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        """Count one LLM call."""
        self.llm_calls += 1

    def on_message(self, chunk: Any, metadata: dict[str, Any]) -> None:
        """Take one ``stream_mode="messages"`` event: a token chunk of a task's LLM call."""
        task = self.tasks.get(metadata.get("langgraph_checkpoint_ns", ""))
        if task is None:
            return
        if task.chunks == 0:
            task.structured = bool(metadata.get("fanout_structured"))
        task.chunks += 1
        if text := chunk.text:
            task.chars += len(text)
            task.tail = (task.tail + text)[-2 * LINE_CHARS :]

    def _task(self, run_id: UUID) -> Task | None:
        key = self._runs.pop(run_id, None)
        return None if key is None else self.tasks.get(key)

    # --- display ---------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """Whether the display is a live table (a terminal), which shows streamed text."""
        return self.console.is_terminal

    def __enter__(self) -> RunProgress:
        if self.live:
            # Live pulls the table on its own schedule: no per-event rendering (O(N^2) per run).
            self._live = Live(
                console=self.console, get_renderable=self._table, refresh_per_second=4
            )
            self._live.__enter__()
        return self

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        if error is None:  # the run's writes are all committed: LangGraph waited for them
            for task_id in list(self._saving):
                self.saved(task_id)
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)

    def _log(self, task: Task, event: str) -> None:
        """One plain line per event when stderr is not a terminal (logs, CI, pipes)."""
        if self._live is None:
            stamp = time.monotonic() - self._start
            label = f" [{short_label(task.label, LABEL_CHARS)}]" if task.label else ""
            event = printable(event, one_line=True)  # an error may quote a model's reply
            self.console.file.write(f"{stamp:7.2f}s {task.node}{label}: {event}\n")

    def _table(self) -> Table:
        """At most MAX_ROWS rows: unfinished tasks first, then the latest finished ones.

        Of the unfinished, those streaming text come first: the calls that stream are the
        ones the table has room for (``langgraph_fanout.llm.call.StreamSlots``).
        """
        now = time.monotonic()
        tasks = list(self.tasks.values())  # Live's refresh thread reads while the loop writes
        unfinished = [t for t in tasks if t.status != "done"]
        unfinished = sorted(unfinished, key=lambda t: t.chunks == 0)[:MAX_ROWS]
        done = [t for t in tasks if t.status == "done"]
        room = MAX_ROWS - len(unfinished)
        shown = sorted(unfinished + (done[-room:] if room else []), key=lambda t: t.started)
        hidden = len(tasks) - len(shown)
        table = Table(
            box=None,
            header_style="bold",
            caption=f"{len(done)}/{len(tasks)} done; {hidden} more not shown" if hidden else None,
            caption_justify="left",
        )
        # Node, status, attempt and elapsed keep their width; "works on" and "writing" share
        # what is left of the terminal's, and "writing" shows the end of each line.
        node = max((len(t.node) for t in shown), default=4)
        room = self.console.width - node - 9 - 7 - 7 - 2 * 6  # 2: each column's padding
        label = min(LABEL_CHARS, max((len(t.label) for t in shown), default=0), room // 3)
        label = max(label, len("works on"))
        writing = room - label
        table.add_column("node", no_wrap=True, min_width=node)
        table.add_column("works on", no_wrap=True, overflow="ellipsis", max_width=label)
        for column, width in (("status", 9), ("attempt", 7), ("elapsed", 7)):
            table.add_column(column, no_wrap=True, min_width=width)
        if writing >= MIN_WRITING:
            table.add_column("writing", no_wrap=True, max_width=writing)
        for task in shown:
            text = escape(task.writing(writing))
            table.add_row(
                task.node,
                escape(short_label(task.label, label)),
                f"[{STYLES[task.status]}]{task.status}[/]",
                str(task.attempts),
                f"{task.elapsed(now):.2f}s",
                text if task.status == "running" else f"[dim]{text}[/]",
            )
        return table

    # --- results ---------------------------------------------------------------------------
    def failed(self) -> list[Task]:
        """Tasks that failed for good."""
        return [t for t in self.tasks.values() if t.status == "failed"]

    def usage(self) -> dict[str, Any]:
        """LLM calls and summed token usage of the run, in total and per model."""
        totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        for usage in self.usage_metadata.values():
            for key in totals:
                totals[key] += usage.get(key, 0)  # type: ignore[operator]
        return {"llm_calls": self.llm_calls, **totals, "by_model": dict(self.usage_metadata)}
