"""The budget check after a fan-out: one pause for every parallel call the limit held back.

A parallel LLM node that the spending limit keeps from starting defers itself
(``langgraph_fanout/placement.py``) rather than pause: each of its siblings would pause the run with
its own interrupt, and a ``Command(resume=...)`` could answer only one. ``check_spending``
runs once they have all ended; it pauses the run (once) if any was deferred, and on resume
:func:`deferred_work` starts them again, under the limits the resume was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send, interrupt

from langgraph_fanout.workflows import task_label
from state.context import Context
from state.spending import NOTHING_SPENT, Deferred, spending_pause

Item = TypeVar("Item", bound=Mapping[str, Any])


async def check_spending(state: Mapping[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause if the limit held parallel calls back; on resume, have them sent again."""
    deferred: list[Deferred] = state.get("deferred") or []
    if not deferred:
        return {"resend": []}
    context = Context.of(runtime.context)
    spent = state.get("spent") or NOTHING_SPENT
    interrupt(spending_pause(spent, context.limits(), [_label(d) for d in deferred]))
    return {"deferred": Overwrite([]), "resend": deferred}


def deferred_work(state: Mapping[str, Any]) -> list[Send | str]:
    """What :func:`check_spending` has to start again: a ``Send`` per worker, else a node."""
    resend: list[Deferred] = state.get("resend") or []
    return [Send(d["node"], d["task"]) if "task" in d else d["node"] for d in resend]


def in_plan_order(results: list[Item], planned: list[str], key: str) -> list[Item]:
    """``results`` in the order of ``planned`` (results of held-back workers came in later)."""
    position = {name: i for i, name in enumerate(planned)}
    return sorted(results, key=lambda result: position.get(result[key], len(position)))


def _label(deferred: Deferred) -> str:
    """``node: what it works on`` (its ``Worker.label``), or the node alone."""
    detail = task_label(deferred["node"], deferred.get("task"))
    return f"{deferred['node']}: {detail}" if detail else deferred["node"]
