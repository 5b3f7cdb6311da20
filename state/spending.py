"""What a run has spent against its limits, and the pause it makes when a limit is reached.

Each LLM node adds what its calls spent (every attempt's) to the ``spent`` channel; a parallel
node that the limit kept from starting adds itself to ``deferred`` instead, and the graph's
budget check pauses once for all of them (one interrupt: ``Command(resume=...)`` goes on).
"""

from __future__ import annotations

from typing import Any, NotRequired

from typing_extensions import TypedDict

PAUSE_KIND = "spending_limit"
"""``kind`` of the interrupt value a run pauses with when a limit is reached."""


class Spent(TypedDict):
    """LLM calls started (retries included) and tokens of the calls that finished.

    ``run``: the run that spent them (its ``RUN_KEY`` in checkpoint metadata): a thread keeps
    the latest run's spending only, so a new run on a used thread counts from nothing.
    """

    llm_calls: int
    total_tokens: int
    run: NotRequired[str]


NOTHING_SPENT = Spent(llm_calls=0, total_tokens=0)
RUN_KEY = "fanout_spending_run"
"""Checkpoint-metadata key of the run whose spending the thread's ``spent`` channel counts."""


def add_spent(left: Spent | None, right: Spent | None) -> Spent:
    """The ``spent`` channel's reducer: the sum, or ``right`` alone if a later run spent it."""
    left, right = left or NOTHING_SPENT, right or NOTHING_SPENT
    if "run" in right and left.get("run", right["run"]) != right["run"]:
        return right
    total = Spent(
        llm_calls=left["llm_calls"] + right["llm_calls"],
        total_tokens=left["total_tokens"] + right["total_tokens"],
    )
    if run := right.get("run") or left.get("run"):
        total["run"] = run
    return total


def counts(spent: Spent) -> dict[str, int]:
    """``spent``'s calls and tokens, as users see them (a channel never written holds ``{}``)."""
    return {"llm_calls": spent.get("llm_calls", 0), "total_tokens": spent.get("total_tokens", 0)}


class Deferred(TypedDict):
    """A parallel node the limit kept from starting: its name and, for a ``Send``, its task."""

    node: str
    task: NotRequired[Any]


def spending_pause(
    spent: Spent, limits: dict[str, int | None], not_started: list[str]
) -> dict[str, Any]:
    """The interrupt value of a run paused at its limit: what it spent, the limits, what is left.

    ``not_started``: the nodes (a worker's as ``node: label``) that did not start.
    """
    return {
        "kind": PAUSE_KIND,
        "spent": counts(spent),
        "limits": {name: value for name, value in limits.items() if value is not None},
        "not_started": not_started,
        "resume": "raise max_llm_calls or max_total_tokens in the run's context and resume "
        "with Command(resume=True)",
    }


def is_spending_pause(value: Any) -> bool:
    """Whether an interrupt's value is a :func:`spending_pause`."""
    return isinstance(value, dict) and value.get("kind") == PAUSE_KIND
