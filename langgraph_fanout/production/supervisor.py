"""Keep the production services running: a dead one is started again, with backoff.

Every second each :class:`Service` is asked whether it is alive. A dead one is started again
after 1 s, then 2, 4, ... up to :data:`MAX_DELAY` s while it keeps dying; a service that stays up
for :data:`STEADY` s starts from 1 s again. Each death and each restart is one line on stderr.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CHECK_EVERY = 1.0
MAX_DELAY = 30.0
STEADY = 60.0
"""Seconds a restarted service must stay up before its backoff starts over."""


@dataclass
class Service:
    """Something to keep running: how to tell it is alive, how to start it again."""

    name: str
    alive: Callable[[], bool]
    start: Callable[[], None]
    deaths: int = 0
    up_since: float = field(default_factory=time.monotonic)
    restart_at: float | None = None


def say(message: str) -> None:
    """One line on stderr, timed."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def supervise(services: Sequence[Service], stopping: threading.Event) -> None:
    """Restart dead services until ``stopping`` is set."""
    while not stopping.wait(CHECK_EVERY):
        now = time.monotonic()
        for service in services:
            if service.restart_at is None:
                if service.alive():
                    if now - service.up_since >= STEADY:
                        service.deaths = 0
                    continue
                service.deaths += 1
                delay = min(MAX_DELAY, 2.0 ** (service.deaths - 1))
                say(f"{service.name} is down; starting it again in {delay:g} s")
                service.restart_at = now + delay
            elif now >= service.restart_at:
                _restart(service)


def _restart(service: Service) -> None:
    try:
        service.start()
    except Exception as exc:  # it failed to start: count it as another death
        service.deaths += 1
        delay = min(MAX_DELAY, 2.0 ** (service.deaths - 1))
        reason = " ".join(str(exc).split())[:300]
        say(f"{service.name} did not start ({reason}); trying again in {delay:g} s")
        service.restart_at = time.monotonic() + delay
        return
    say(f"{service.name} is up again")
    service.up_since = time.monotonic()
    service.restart_at = None
