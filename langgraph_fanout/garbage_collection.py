"""Fewer full garbage collections while runs are in flight.

A full collection of CPython's cyclic collector scans every tracked object of the process:
about 240,000 once LangChain, LangGraph and the OpenAI SDK are imported and warm, plus about
250 per LLM call in flight. With CPython's default thresholds, ``(700, 10, 10)``, an article
of 1,000 sections started about 4 of them per run, 100-250 ms each on 2 cores, and none found
anything to free: the objects in flight are alive, and reference counting frees them when
their call ends (docs/performance.md). So while a run is in flight the third threshold is 100
instead of 10: a full collection waits for 100 young-generation collections (about 2,000
worker calls), not 10. The young collections, which free the cycles a run makes, run as
before.

The thresholds are the process's: a process that set its own (anything but CPython's
defaults) keeps them, and the defaults come back when the last run of the process ends, unless
something else changed them meanwhile. A graph run as a Temporal workflow leaves them alone:
workflow code is replayed and sandboxed, and its fan-out runs in activities.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_THRESHOLDS = (700, 10, 10)
"""CPython's (3.11 to 3.13) thresholds; a process with other thresholds is left alone."""
WHILE_RUNNING = (700, 10, 100)
"""The thresholds while runs are in flight: a full collection after 100 of generation 1."""

_lock = threading.Lock()
_runs = 0
_raised = False


@contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Hold :data:`WHILE_RUNNING` as the process's thresholds while the block runs.

    Blocks may overlap (runs at once, on threads too): the first raises the thresholds if they
    are CPython's defaults, the last puts the defaults back if they are still the raised ones.
    """
    global _runs, _raised
    if _in_temporal_workflow():
        yield
        return
    with _lock:
        if _runs == 0 and gc.get_threshold() == DEFAULT_THRESHOLDS:
            gc.set_threshold(*WHILE_RUNNING)
            _raised = True
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _raised:
                if gc.get_threshold() == WHILE_RUNNING:
                    gc.set_threshold(*DEFAULT_THRESHOLDS)
                _raised = False


def _in_temporal_workflow() -> bool:
    workflow = sys.modules.get("temporalio.workflow")  # not imported: not on Temporal
    return workflow is not None and bool(workflow.in_workflow())
