"""One background event loop per process, where synchronous callers run coroutines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the background event loop (started on first use) and wait.

    One long-lived loop, not one per call: models and their HTTP clients are cached per
    event loop, so sync runs reuse them. Works even when the calling thread runs an event
    loop of its own (a notebook). Context variables (the run's config, callbacks) follow.
    """
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(
                target=_loop.run_forever, name="fanout-sync-calls", daemon=True
            ).start()
    future = asyncio.run_coroutine_threadsafe(coroutine, _loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # the caller gave up (e.g. KeyboardInterrupt): stop the call too
        raise
