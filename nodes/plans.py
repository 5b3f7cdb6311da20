"""Plans from a model, held to their bounds: cut when too long, retried when too short."""

from __future__ import annotations

import logging
from typing import TypeVar

from langgraph_fanout.llm.call import current_node
from langgraph_fanout.llm.retry import MalformedOutputError

T = TypeVar("T")

logger = logging.getLogger(__name__)


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
