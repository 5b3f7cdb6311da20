"""Stopping the server processes this package starts."""

from __future__ import annotations

import signal
import subprocess

STOP_TIMEOUT = 45.0
"""Past Aegra's WORKER_DRAIN_TIMEOUT (30 s), in which a stopping replica finishes its runs."""


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to ``process`` and reap it; SIGKILL it if it lingers past STOP_TIMEOUT."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
