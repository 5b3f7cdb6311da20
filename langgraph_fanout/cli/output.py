"""Where the CLI writes: progress and messages on stderr, the result on stdout."""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from langgraph_fanout.cli.terminal import printable, to_json
from langgraph_fanout.persistence.run_records import RunRecord
from langgraph_fanout.workflows import Workflow

stderr = Console(stderr=True, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True, markup=False)  # model text is not markup
PIPE_WIDTH = 240
MIN_INPUT_WIDTH = 12


def print_result(
    as_json: bool,
    workflow: Workflow,
    record: RunRecord,
    output: dict[str, Any],
    usage: dict[str, Any],
) -> None:
    """Print a finished run: the usage line on stderr, the result on stdout."""
    tokens = (
        f", {usage['input_tokens']} input + {usage['output_tokens']} output tokens"
        if "input_tokens" in usage  # not collected from Temporal workers
        else ""
    )
    stderr.print(f"done: {usage['llm_calls']} LLM calls{tokens}", highlight=False)
    review = output.get("review") or {}
    if review.get("decision") == "rejected":
        reason = f": {printable(review['reason'])}" if review["reason"] else ""
        stderr.print(f"plan rejected at review{reason}; no worker ran", markup=False)
    if as_json:
        print(to_json({"thread_id": record.thread_id, **output, "usage": usage}))
    elif review.get("decision") == "rejected":
        return
    else:
        stdout.print(printable(workflow.render(output)))


def print_shown(shown: dict[str, Any], workflow: Workflow, as_json: bool) -> None:
    """Print ``fanout show``'s view of a run: readable lines and its result, or one JSON object."""
    if as_json:
        print(to_json(shown))
        return
    keys = ("thread_id", "graph", "status", "started", "door")  # no door on Temporal
    lines = [f"{key}: {shown[key]}" for key in keys if key in shown]
    if shown.get("next"):
        lines.append(f"next: {', '.join(shown['next'])}")
    for task in shown.get("pending", []):
        label = f" [{task['label']}]" if task.get("label") else ""
        error = f": {task['error']}" if task.get("error") else ""
        lines.append(f"pending: {task['node']}{label}{error}")
    if shown.get("error"):
        lines.append(f"error: {shown['error']}")
    lines += [f"waiting for its plan review: {to_json(plan)}" for plan in shown.get("review", [])]
    if limits := shown.get("limits"):
        spent = shown["spent"]
        within = ", ".join(f"{name}={value}" for name, value in limits.items())
        lines.append(
            f"spent: {spent['llm_calls']} LLM calls, {spent['total_tokens']} tokens "
            f"(limits: {within})"
        )
    if usage := shown.get("usage"):
        lines.append(f"usage: {usage['llm_calls']} LLM calls")
    for line in lines:
        stdout.print(printable(line, one_line=True))
    if shown["status"] == "done" and shown.get("values"):
        stdout.print()
        stdout.print(printable(workflow.render(shown["values"])))


class NoticeHandler(logging.Handler):
    """Log records as one plain line each on stderr (above the live view, if one is up)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print the record's message."""
        stderr.print(printable(record.getMessage(), one_line=True), markup=False, highlight=False)


def print_header(workflow: Workflow, thread_id: str, model: str, where: str = "") -> None:
    """The first lines of a run on stderr: its thread id, then what runs it on what model."""
    from langgraph_fanout.llm.models import is_local

    stderr.print(f"thread: {printable(thread_id, one_line=True)}", highlight=False, markup=False)
    note = " (embedded, demo-grade: weak content, unreliable judgements)" if is_local(model) else ""
    stderr.print(f"{workflow.name} on model {model}{note}{where}", highlight=False, markup=False)


def report_failure(failed: list[tuple[str, str, str]], fallback: str) -> None:
    """Say where a run failed: each failed (node, label, error), else ``fallback``."""
    where = ", ".join(node + (f" [{label}]" if label else "") for node, label, _ in failed)
    cause = failed[0][2] if failed else fallback
    where, cause = printable(where, one_line=True), printable(cause, one_line=True)
    stderr.print(
        f"[bold red]run failed[/] in {escape(where or 'the graph')}: {escape(cause)}",
        highlight=False,
    )


def report_spending_pause(pause: dict[str, Any], resume_hint: str) -> None:
    """Say that the run paused at a spending limit: what it spent, the limits, what is left."""
    spent, limits = pause["spent"], pause["limits"]
    stderr.print(
        f"[bold yellow]paused at the spending limit[/] "
        f"({escape(', '.join(f'{k}={v}' for k, v in limits.items()))}): "
        f"{spent['llm_calls']} LLM calls started, {spent['total_tokens']} tokens used",
        highlight=False,
    )
    left = ", ".join(pause["not_started"])
    stderr.print(f"not started: {printable(left, one_line=True)}", highlight=False, markup=False)
    stderr.print(resume_hint, highlight=False, markup=False)


def raised_limits(pause: dict[str, Any]) -> str:
    """The options of a resume past ``pause``: room for the calls that did not start.

    That is one more call each and one for the step after them (retries need more); tokens
    get twice the limit.
    """
    limits, spent = pause["limits"], pause["spent"]
    options = ""
    if "max_llm_calls" in limits:
        calls = max(limits["max_llm_calls"], spent["llm_calls"]) + len(pause["not_started"]) + 1
        options += f" --max-llm-calls {calls}"
    if "max_total_tokens" in limits:
        options += f" --max-total-tokens {2 * limits['max_total_tokens']}"
    return options


def print_runs(as_json: bool, rows: list[dict[str, str]], *, where: str) -> None:
    """Print runs: one JSON list (``as_json``), else a table (``where``: their source)."""
    if as_json:
        print(to_json(rows))
    elif not rows:
        stderr.print(f"no runs in {where}", highlight=False, markup=False)
    else:
        _runs_table(rows)


def _runs_table(rows: list[dict[str, str]]) -> None:
    """Print runs as a table whose thread ids stay whole; the input column gives way."""
    # Piped output is not cut to 80 columns: whole lines, for scripts and grep.
    out = stdout if stdout.is_terminal else Console(width=PIPE_WIDTH, highlight=False)
    cells = [
        tuple(
            printable(cell, one_line=True)
            for cell in (
                r["thread_id"],
                r["graph"],
                r["status"],
                r["started"][:16].replace("T", " "),
                r["door"],
                r["input"],
            )
        )
        for r in rows
    ]
    headers = ("thread", "graph", "status", "started (UTC)", "door", "input")
    fixed = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:-1])]
    room = out.width - sum(fixed) - 2 * len(headers)  # each column is padded by one each side
    table = Table(box=None, header_style="bold")
    for header in headers[:-1]:
        table.add_column(header, no_wrap=True)
    if room >= MIN_INPUT_WIDTH:
        table.add_column("input", no_wrap=True, overflow="ellipsis", max_width=room)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row[: len(table.columns)]))  # not markup
    out.print(table)
