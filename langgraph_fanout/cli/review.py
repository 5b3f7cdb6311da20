"""``--review``: show the plan, then run it, edit it in ``$EDITOR`` or reject it.

The run pauses at its review (``nodes/review.py``); this module turns a person's choice at the
terminal, or the decision in ``--plan FILE`` (JSON, or YAML for any other name), into the
resume value. Every decision is validated here with the graph's own rules first, so a bad
edit is reported at once and asked again. ``--plan`` makes a run that never prompts.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.prompt import Prompt

from langgraph_fanout.cli.terminal import printable
from langgraph_fanout.workflows import Plan, Workflow
from state.context import Context
from state.review import InvalidDecisionError

EXIT_REJECTED = 3
"""Exit code of a run whose plan was rejected at review: it ended without any worker."""


class ReviewUsageError(Exception):
    """``--review``/``--plan`` cannot work as asked (no terminal, unreadable file...)."""


class ReviewStopped(Exception):
    """The review did not end in a decision; the run stays paused at it."""


def reviewer_for(
    console: Console, workflow: Workflow, context: Context, plan_file: str | None, *, paused: bool
) -> Reviewer | None:
    """Who answers a plan review: ``--plan FILE``, else a prompt on the terminal.

    ``paused``: the run already waits at its review. None for a workflow without a plan.

    Raises:
        ReviewUsageError: a bad ``--plan`` file, a review for a workflow without a plan, or a
            review with nobody to ask (stdin is not a terminal and there is no ``--plan``).
    """
    plan = workflow.plan
    if plan is None:
        if plan_file or context.review_plan:
            raise ReviewUsageError(f"{workflow.name} runs have no plan to review")
        return None
    if plan_file:
        return Reviewer(
            console, workflow.name, plan, context, load_plan_file(plan_file, plan, context)
        )
    if (context.review_plan or paused) and not sys.stdin.isatty():
        raise ReviewUsageError(
            "the plan review needs a terminal to ask on (stdin is not one): "
            "pass --plan FILE with the decision"
        )
    return Reviewer(console, workflow.name, plan, context)


def load_plan_file(path: str, plan: Plan, context: Context) -> dict[str, Any]:
    """The decision in ``path``: a plan, ``{"approve": true}`` or ``{"reject": true}``.

    Raises:
        ReviewUsageError: the file cannot be read or parsed, or is not a valid decision.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewUsageError(f"cannot read --plan {path}: {exc}") from None
    try:
        value = parse_text(text, json_only=path.endswith(".json"))
        plan.decide(value, {}, context)
    except (ValueError, InvalidDecisionError) as exc:
        raise ReviewUsageError(f"--plan {path}: {exc}") from None
    return value


def parse_text(text: str, *, json_only: bool = False) -> Any:
    """A decision written as JSON (``json_only``) or YAML (which JSON also is, mostly).

    Raises:
        ValueError: the text does not parse, or holds nothing.
    """
    if json_only:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
    else:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    if value is None:
        raise ValueError("the file holds no plan")
    return value


def calls_against_limit(workers: int, after: int, limit: int) -> str:
    """What a plan of ``workers`` costs against ``max_llm_calls``, before it runs.

    Counted with the planner's call, made, and the ``after`` calls that follow the workers;
    retries would need more.
    """
    planned = 1 + workers + after
    if planned <= limit:
        return f"{planned} LLM calls planned, limit {limit} (retries need more)"
    held = workers - min(workers, limit - 1)
    what = f"{held} of {workers} workers would not start" if held else "the last step would wait"
    return f"{planned} LLM calls planned, limit {limit}: {what} (the run pauses; resume it higher)"


@dataclass
class Reviewer:
    """Answers a run's plan review: with the ``--plan`` decision, else at the terminal."""

    console: Console
    graph: str
    plan: Plan
    context: Context
    decision: dict[str, Any] | None = None
    """From ``--plan FILE``: given to the first review."""

    def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        """The resume value for a run paused with ``request`` (its plan, maybe an error).

        Blocks on the terminal: :mod:`langgraph_fanout.cli.stream` calls it in a thread of its
        own, so signals (Ctrl-C, SIGTERM) still reach the event loop and stop the run as they
        always do.

        Raises:
            ReviewStopped: no decision (no terminal, EOF, or ``--plan`` refused).
        """
        if self.decision is not None:
            if error := request.get("error"):
                raise ReviewStopped(f"the run refused the decision in --plan: {error}")
            decision, self.decision = self.decision, None
            return decision
        if not sys.stdin.isatty():
            raise ReviewStopped(
                "the run waits for its plan review, and stdin is not a terminal to ask on: "
                "pass --plan FILE"
            )
        plan = {self.plan.key: request[self.plan.key]}
        if error := request.get("error"):
            self.console.print(f"[bold red]the last decision was refused:[/] {escape(error)}")
        self.show(plan)
        try:
            return self._ask(plan)
        except EOFError:
            raise ReviewStopped("no decision (end of input)") from None

    def show(self, plan: dict[str, Any]) -> None:
        """Print ``plan`` as a numbered list."""
        items = self.plan.items(plan)
        self.console.print(
            f"\n[bold]Plan:[/] {len(items)} {self.plan.noun} ({self.plan.bound(self.context)})"
        )
        for i, (heading, detail) in enumerate(items, 1):
            self.console.print(f"{i:>3}. [bold]{escape(printable(heading))}[/]", highlight=False)
            if detail:
                self.console.print(f"     {escape(printable(detail))}", highlight=False)
        if (limit := self.context.max_llm_calls) is not None:
            line = calls_against_limit(len(items), self.plan.calls_after, limit)
            self.console.print(line, highlight=False, markup=False)

    def _ask(self, plan: dict[str, Any]) -> dict[str, Any]:
        choice = self._choose("Run this plan, edit it, or reject it?", "run")
        text = self._template(plan)
        while True:
            if choice == "run":
                return {"approve": True}
            if choice == "reject":
                reason = Prompt.ask("Why (optional)", console=self.console, default="")
                return {"reject": True, "reason": reason.strip()}
            text = edit(text, self.console)
            try:
                value = parse_text(text)
                outcome = self.plan.decide(value, plan, self.context)
            except (ValueError, InvalidDecisionError) as exc:
                self.console.print(f"[bold red]not a valid plan:[/] {escape(str(exc))}")
                choice = self._choose("Edit it again, run it as planned, or reject it?", "edit")
                continue
            if outcome.review["decision"] == "edited":
                self.show({self.plan.key: outcome.plan})
            return value

    def _choose(self, question: str, default: str) -> str:
        return Prompt.ask(
            question, console=self.console, choices=["run", "edit", "reject"], default=default
        )

    def _template(self, plan: dict[str, Any]) -> str:
        header = (
            f"# The {self.graph} plan: {self.plan.bound(self.context)} {self.plan.noun}, "
            "run in this order.\n"
            "# Edit it, save and quit. Lines starting with # are ignored.\n"
            "# To reject the plan instead, replace everything with:  reject: true\n"
        )
        body = yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, width=96)
        return header + body


def edit(text: str, console: Console) -> str:
    """``text`` after a person edited it in ``$VISUAL``/``$EDITOR`` (else click's default)."""
    try:
        edited = click.edit(text, extension=".yaml", require_save=False)
    except click.ClickException as exc:
        console.print(f"[bold red]{escape(exc.format_message())}[/]; plan unchanged")
        return text
    return text if edited is None else edited
