"""Ctrl-C for the launcher alone, so that ``make serve-production`` ends with exit 0.

A Ctrl-C goes to the terminal's foreground process group: ``make`` and the launcher. make dies
of it whatever the launcher does (exit 130, "Interrupt"). When the launcher is in the
foreground of a terminal, it takes the terminal for a process group of its own, as a shell
does for a job; Ctrl-C then reaches it alone, it stops everything, exits 0, and make with it.
It gives the terminal back before it exits. Without a terminal (a service manager, CI) nothing
changes: signals reach the launcher as they are sent.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def own_ctrl_c() -> Iterator[None]:
    """For the block, this process leads the terminal's foreground group (if it was in it)."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield  # no controlling terminal
        return
    try:
        before = os.tcgetpgrp(tty)
        if before != os.getpgrp() or before == os.getpid():
            yield  # in the background (not ours to take), or the group is this process's
            return
        os.setpgid(0, 0)
        _foreground(tty, os.getpgrp())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # the job's group is gone: nothing to give back
                _foreground(tty, before)
    finally:
        os.close(tty)


def _foreground(tty: int, group: int) -> None:
    """Make ``group`` the terminal's foreground (a background group may, ignoring SIGTTOU)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(tty, group)
    finally:
        signal.signal(signal.SIGTTOU, previous)
