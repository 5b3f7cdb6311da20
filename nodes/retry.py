"""Which failures of an LLM node are worth another attempt, and how often."""

from __future__ import annotations

import json

import httpx
import openai
from langchain_core.exceptions import OutputParserException
from langgraph.types import RetryPolicy, default_retry_on
from pydantic import ValidationError

from state.inputs import InvalidInputError

TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
"""HTTP statuses below 500 that a later attempt can cure."""


class MalformedOutputError(ValueError):
    """The model's reply parsed but is unusable (e.g. an empty plan); worth another attempt."""


def is_retryable(exc: BaseException) -> bool:
    """Transient provider failures and malformed model output; never bad input or our bugs."""
    if isinstance(exc, InvalidInputError):
        return False
    if isinstance(
        exc,
        (
            MalformedOutputError,
            OutputParserException,
            ValidationError,
            json.JSONDecodeError,
            TimeoutError,
            ConnectionError,
            httpx.TransportError,
            openai.APIConnectionError,  # includes APITimeoutError
        ),
    ):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS or status >= 500
    return isinstance(exc, Exception) and default_retry_on(exc)


LLM_RETRY = RetryPolicy(
    max_attempts=3,
    initial_interval=0.5,
    backoff_factor=2.0,
    max_interval=10.0,
    jitter=True,
    retry_on=is_retryable,
)
"""Retry policy of every LLM node: three attempts, exponential backoff with jitter."""
