"""Calling the LangGraph API servers from Python: a run created once, however often it is retried.

A create can fail although the server stored the run: Aegra answers 500 during a Redis outage,
then runs the stored run once Redis is back (or its reaper finds it); a dropped connection
loses the answer to a create that worked. A client that simply tries again gets two runs, and
pays for both. :func:`create_run_once` marks the run with a request id of the caller's choosing
and looks for it on the thread before every try, so a retry finds the run the failed try made.
Aegra 0.11 takes no client-chosen run id and ignores ``multitask_strategy``; a thread with an id
of the caller's choosing (``if_exists="do_nothing"``) and the thread's run list are what both
servers offer for this.
"""

from __future__ import annotations

from typing import Any, cast

import httpx
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import APIConnectionError
from langgraph_sdk.schema import Config, Run
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

REQUEST_KEY = "fanout_request_id"
"""The run-config metadata key that carries the caller's request id."""
RETRY_FOR = 600.0
"""Seconds a create keeps being retried through server or network failures."""


async def create_run_once(
    client: LangGraphClient,
    thread_id: str,
    assistant_id: str,
    *,
    request_id: str,
    config: dict[str, Any] | None = None,
    **run: Any,
) -> Run:
    """The run of ``request_id`` on ``thread_id``: made by this call, or found from an earlier try.

    ``run``: what ``client.runs.create`` takes besides (``input``, ``context``, ``command``...).
    The thread is created if it does not exist. A server error (5xx, 429) or a network failure
    is retried for up to :data:`RETRY_FOR` s.

    Raises:
        langgraph_sdk.errors.APIStatusError: the server refused the run (4xx), or kept failing.
    """
    marked = dict(config or {})
    marked["metadata"] = {**marked.get("metadata", {}), REQUEST_KEY: request_id}
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_transient),
        wait=wait_random_exponential(multiplier=0.5, max=5.0),
        stop=stop_after_delay(RETRY_FOR),
        reraise=True,
    ):
        with attempt:
            await client.threads.create(thread_id=thread_id, if_exists="do_nothing")
            for stored in await client.runs.list(thread_id, limit=100):
                if _request_of(stored) == request_id:
                    return stored
            created: Run = await client.runs.create(
                thread_id, assistant_id, config=cast(Config, marked), **run
            )
            return created
    raise AssertionError("unreachable: the retries return or raise")


def _request_of(run: Run) -> str | None:
    """The request id a run was made for (Aegra lists its config; langgraph dev its kwargs)."""
    found: dict[str, Any] = dict(run)
    for config in (found.get("config"), (found.get("kwargs") or {}).get("config")):
        if isinstance(config, dict) and REQUEST_KEY in (config.get("metadata") or {}):
            return str(config["metadata"][REQUEST_KEY])
    return None


def _transient(exc: BaseException) -> bool:
    """Whether a failed call may work if made again: a server error, or no answer at all."""
    if isinstance(exc, APIConnectionError | httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return False
