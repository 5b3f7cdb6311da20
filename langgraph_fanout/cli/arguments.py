"""Exit codes, argument types, and a run's input and settings read from the command line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from langgraph_fanout.cli.request import Request
from langgraph_fanout.cli.review import Reviewer, ReviewUsageError, reviewer_for
from langgraph_fanout.workflows import Workflow
from state.context import ConfigurationError, Context
from state.inputs import (
    BIDI_MARKS,
    LINE_SEPARATORS,
    InvalidInputError,
    explain,
    parse_input,
    usable_text,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_TAKEN_OVER = 4
"""Another process took the thread after this one lost its lock (a database restart)."""
EXIT_LIMIT = 5
"""The run paused at a spending limit: its finished work is saved; resume with a higher one."""
MAX_THREAD_ID_CHARS = 200


class UsageError(Exception):
    """Bad usage or bad input: exit 2, nothing persisted."""


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def renamed_node(text: str) -> tuple[str, str]:
    """An argparse type: ``OLD=NEW``, two node names."""
    old, _, new = text.partition("=")
    if not old.strip() or not new.strip() or "=" in new:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW, two node names, got {text!r}")
    return old, new


def thread_id(text: str) -> str:
    """An argparse type: a thread id (visible, no control characters, at most 200 chars).

    No bidirectional mark or line separator either: two ids that look the same must be the
    same id.
    """
    try:
        value = usable_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if found := [c for c in value if c in BIDI_MARKS | LINE_SEPARATORS]:
        raise argparse.ArgumentTypeError(
            f"must not contain invisible marks or line separators (U+{ord(found[0]):04X} at "
            f"position {value.index(found[0])})"
        )
    if len(value) > MAX_THREAD_ID_CHARS:
        raise argparse.ArgumentTypeError(f"longer than {MAX_THREAD_ID_CHARS} characters")
    return value


def read_value(workflow: Workflow, raw: str) -> str:
    """The run's input value from the command line (``-``: stdin), validated.

    Raises:
        UsageError: it is not valid text or not a valid input.
    """
    try:
        value = sys.stdin.read() if raw == "-" else raw
    except UnicodeDecodeError as exc:
        raise UsageError(f"stdin is not valid text: {exc}") from None
    try:
        return getattr(
            parse_input(workflow.input_model, {workflow.input_field: value}), workflow.input_field
        )
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None


def run_context(request: Request, base: Context) -> Context:
    """``base`` with the settings given on the command line.

    Raises:
        UsageError: a setting is invalid.
    """
    changes: dict[str, Any] = {"model": request.model or base.model, **request.settings}
    limits = {
        "max_tokens": request.max_tokens,
        "max_llm_calls": request.max_llm_calls,
        "max_total_tokens": request.max_total_tokens,
    }
    changes |= {name: value for name, value in limits.items() if value is not None}
    if request.review or request.plan:
        changes["review_plan"] = True
    try:
        context = replace(base, **changes)
    except ValidationError as exc:
        raise UsageError(f"invalid settings: {explain(exc)}") from None
    return context


def check_run_models(context: Context) -> None:
    """Refuse a model setting that cannot load, for any role, before anything is persisted."""
    from langgraph_fanout.llm.models import check_models

    try:
        check_models(context)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def new_run(request: Request, workflow: Workflow) -> tuple[str, Context]:
    """A new run's input value and settings, checked, its model resolved for good.

    The run keeps the model it starts with, whatever ``$FANOUT_MODEL`` says when it is
    resumed (or, on Temporal, on the workers).

    Raises:
        UsageError: bad input or settings, or a model that cannot load.
    """
    value = read_value(workflow, request.value)
    context = run_context(request, Context())
    from langgraph_fanout.llm.models import resolve_model  # after validation: LangChain

    context = replace(context, model=resolve_model(context.model))
    check_run_models(context)
    return value, context


def reviewer(
    request: Request, workflow: Workflow, context: Context, *, paused: bool
) -> Reviewer | None:
    """Who answers the run's plan review (``--plan FILE`` or the terminal), if it has one.

    Raises:
        UsageError: ``--review``/``--plan`` cannot work as asked.
    """
    from langgraph_fanout.cli.output import stderr

    try:
        return reviewer_for(stderr, workflow, context, request.plan, paused=paused)
    except ReviewUsageError as exc:
        raise UsageError(str(exc)) from None
