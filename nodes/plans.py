"""Plans from a model: their texts cleaned, held to their bounds (cut, or retried if short)."""

from __future__ import annotations

import logging
import re
from typing import TypeVar

from langgraph_fanout.llm.call import current_node
from langgraph_fanout.llm.retry import MalformedOutputError
from state.inputs import usable_text

T = TypeVar("T")

logger = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
"""Unicode Cc, surrogates, and the bidirectional controls ``usable_text`` refuses."""


def clean_text(text: str, limit: int) -> str:
    """A model's text made fit for a plan, so a person can send it back unchanged.

    Control characters (bidirectional controls too), line breaks and runs of spaces become
    one space; cut to ``limit`` characters.
    """
    return " ".join(_CONTROL.sub(" ", text).split())[:limit].strip()


def visible(text: str) -> bool:
    """Whether ``text`` passes :func:`state.inputs.usable_text` (shows something)."""
    try:
        usable_text(text)
    except ValueError:
        return False
    return True


def fit_plan(items: list[T], *, what: str, minimum: int, maximum: int) -> list[T]:
    """``items`` cut to ``maximum`` with a warning; fewer than ``minimum`` is a retryable error."""
    if len(items) < minimum:
        raise MalformedOutputError(
            f"{current_node()}: the model planned {len(items)} {what}; "
            f"at least {minimum} are needed"
        )
    if len(items) > maximum:
        logger.warning(
            "%s: the model planned %d %s; keeping the first %d",
            current_node(),
            len(items),
            what,
            maximum,
        )
    return items[:maximum]
