"""Which failures of an LLM node are worth another attempt, and how often.

Two layers retry, each doing what it does best. The provider's client (``max_retries`` of the
openai SDK) repeats a request that timed out, could not connect or got 408/409/429/5xx, waiting
what a 429's ``Retry-After`` asks (up to 120 s) or 0.5-1 s. The graph's :data:`LLM_RETRY`
repeats the whole node when the reply is malformed or the client gave up. Worst case for one
LLM node: ``LLM_ATTEMPTS x (CLIENT_RETRIES + 1)`` requests, each cut at ``Context.timeout``, plus
at most ``LLM_ATTEMPTS x CLIENT_RETRIES`` waits of up to 120 s, plus about 11 s of backoff.
"""

from __future__ import annotations

import sys

import httpx
from langchain_core.exceptions import OutputParserException
from langgraph.types import RetryPolicy

TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
"""HTTP statuses below 500 that a later attempt can cure."""
CLIENT_RETRIES = 2
"""Retries of one request inside the provider's client (honouring ``Retry-After``)."""
LLM_ATTEMPTS = 5
"""Attempts of one LLM node (each one a request with its client retries)."""


class MalformedOutputError(ValueError):
    """The model's reply did not parse or is unusable (e.g. an empty plan); worth another try."""


class LLMConnectionError(RuntimeError):
    """The LLM server could not be reached or did not answer in time (names the URL).

    A ``RuntimeError``, so that the ``langgraph dev`` server shows its message.
    """


def openai_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the openai SDK's "could not connect or timed out" error.

    Such an error exists only once the SDK is loaded: processes that never call a model (a
    Temporal client, ``fanout runs``, the server's API process) need not import it (~0.6 s).
    """
    openai = sys.modules.get("openai")
    return openai is not None and isinstance(exc, openai.APIConnectionError)


def is_retryable(exc: BaseException) -> bool:
    """Transient provider failures and malformed model output.

    Everything else fails at once: bad input, bad settings, and bugs of our own.
    """
    if isinstance(
        exc,
        (
            MalformedOutputError,
            LLMConnectionError,
            OutputParserException,
            TimeoutError,
            ConnectionError,
            httpx.TransportError,
        ),
    ):
        return True
    if openai_connection_error(exc):
        return True
    status = getattr(exc, "status_code", None)  # openai, anthropic, ... status errors
    return isinstance(status, int) and (status in TRANSIENT_STATUS or status >= 500)


LLM_RETRY = RetryPolicy(
    max_attempts=LLM_ATTEMPTS,
    initial_interval=0.5,
    backoff_factor=2.0,
    max_interval=8.0,
    jitter=True,
    retry_on=is_retryable,
)
"""Retry policy of every LLM node: five attempts, 0.5-4 s apart (x2 each time, with jitter)."""
