"""``fanout worker --temporal HOST:PORT``: serve the workflows and their activities."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import types
import warnings
from datetime import timedelta
from typing import Any

from langgraph_fanout.cli.arguments import EXIT_OK
from langgraph_fanout.cli.output import stderr
from langgraph_fanout.cli.request import Request
from langgraph_fanout.cli.temporal import connect

GRACEFUL_SHUTDOWN = timedelta(seconds=5)
"""On SIGTERM, how long a worker lets running activities finish before handing them back."""


async def serve(request: Request) -> int:
    """Serve every workflow and its activities until SIGTERM or Ctrl-C."""
    from langgraph_fanout.temporal.client import settle
    from langgraph_fanout.temporal.versioning import build_id
    from langgraph_fanout.temporal.worker import serving

    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("langgraph_fanout.temporal").setLevel(logging.INFO)
    try:
        client = await connect(request)
        identity = f"{os.getpid()}@{socket.gethostname()}"
        build = request.build_id or build_id()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with serving(
            client,
            request.task_queue,
            build=build,
            promote=request.promote,
            max_concurrent_activities=request.max_concurrency,
            identity=identity,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        ) as (_, promotion):
            stderr.print(
                f"worker {identity} on {request.temporal}, task queue {request.task_queue!r}, "
                f"version {build} ({promotion.note}): ready",
                highlight=False,
                markup=False,
            )
            await stop.wait()
            stderr.print("stopping: finishing running activities", highlight=False, markup=False)
        stderr.print("worker stopped", highlight=False, markup=False)
        drop_evicted_workflows()
        return EXIT_OK
    finally:
        await settle()  # the process exits next


def drop_evicted_workflows() -> None:
    """Let the workflows the stopped worker dropped die silently as the process exits.

    At shutdown the SDK drops the runs it had cached without resuming them; their LangGraph
    coroutines and generators are then finalized by the garbage collector, with no event
    loop to run their cleanup in, and each printed a traceback ("Exception ignored in ...
    no running event loop"). The runs go on from their histories on other workers: nothing
    of them lives in this process. Any other unraisable error is still printed.
    """
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.object, types.CoroutineType | types.AsyncGeneratorType):
            sys.__unraisablehook__(unraisable)

    sys.unraisablehook = hook


class OneLineFormatter(logging.Formatter):
    """A worker's log: one plain line per message, as log collectors count them.

    The Temporal core's warnings (a lost server, retried polls) span lines, and Rich would
    wrap them further; a traceback still follows its line, but for a cancellation: an attempt
    the server gave up on (its heartbeats came late on a loaded machine) is cancelled on the
    worker, which the SDK logs with the cancelled call's whole stack.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line; a cancellation's traceback as its one-line cause."""
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            error = record.exc_info[1]
            record = logging.makeLogRecord(
                {**record.__dict__, "exc_info": None, "exc_text": None}
                | {"msg": f"{record.getMessage()}: {type(error).__name__}: {error}", "args": ()}
            )
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The message with every run of whitespace, line breaks included, as one space."""
        return " ".join(super().formatMessage(record).split())
