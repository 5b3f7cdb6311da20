"""Riding out a PostgreSQL outage: retry on a fresh connection, and say so once.

A PostgreSQL restart, a failover or a network blip closes every connection. A run's
checkpoint writes then wait and retry, on a new connection, until the database answers again
(up to :data:`OUTAGE_LIMIT`); nothing is lost, since every write is idempotent (an upsert, or
an insert that ignores a row already there) and a write that may have committed before its
connection died is simply written again. The LLM calls in flight meanwhile go on.

One warning when the database is lost, one when it is back (logger
``langgraph_fanout.database``: the CLI prints it on stderr, servers log it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from langgraph_fanout.persistence.urls import redact

T = TypeVar("T")

OUTAGE_LIMIT = 600.0
"""Seconds a database operation keeps retrying before the run fails (finished work stays saved)."""
RECONNECT_DELAY = 0.2, 2.0
"""Scale and cap of the (randomised, doubling) wait between two attempts, in seconds: a run
goes on within about 2 s of the database's return."""

logger = logging.getLogger("langgraph_fanout.database")


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (worth retrying), not a bad query.

    psycopg's ``OperationalError`` covers a closed or broken connection, a refused connect, a
    server shutting down or starting up (SQLSTATE 57P01-57P03) and a pool timeout.
    """
    import psycopg

    return isinstance(exc, psycopg.OperationalError)


class Outage:
    """The state of one database's connection, for the notices: lost since when, if lost."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.lost_at: float | None = None

    def lost(self, exc: BaseException) -> None:
        """A connection error: warn, once per outage."""
        if self.lost_at is None:
            self.lost_at = time.monotonic()
            reason = " ".join(str(exc).split()) or type(exc).__name__
            logger.warning(
                "lost the database %s (%s); retrying for up to %g min, finished work is saved",
                self.where,
                reason,
                OUTAGE_LIMIT / 60,
            )

    def back(self) -> None:
        """The database answered: say so if it had been lost."""
        if self.lost_at is not None:
            logger.warning(
                "the database %s is back after %.1f s", self.where, time.monotonic() - self.lost_at
            )
            self.lost_at = None


_OUTAGES: dict[str, Outage] = {}


def outage_of(url: str) -> Outage:
    """The one :class:`Outage` of database ``url`` in this process (savers and locks share it)."""
    if url not in _OUTAGES:
        _OUTAGES[url] = Outage(redact(url))
    return _OUTAGES[url]


async def ride_out(
    outage: Outage,
    operation: Callable[[], Awaitable[T]],
    reconnect: Callable[[], Awaitable[object]],
) -> T:
    """``operation()``, retried on connection errors until it succeeds or :data:`OUTAGE_LIMIT`.

    ``reconnect`` runs before every attempt after the first (a new connection if the old one
    died; it may fail too, which counts as a failed attempt).

    Raises:
        psycopg.OperationalError: the database stayed unreachable past the limit.
    """

    def warn(state: RetryCallState) -> None:
        # Not on a first failure: a connection that died in an outage long over fails once,
        # then works again on a new one.
        if state.attempt_number > 1 and state.outcome and (exc := state.outcome.exception()):
            outage.lost(exc)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_connection_error),
        wait=wait_random_exponential(multiplier=RECONNECT_DELAY[0], max=RECONNECT_DELAY[1]),
        stop=stop_after_delay(OUTAGE_LIMIT),
        before_sleep=warn,
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                await reconnect()
            result = await operation()
    outage.back()
    return result
