"""A moved run's reuse of its old run's finished activities (``moves.py``), in the workflow.

Both sides identify an activity's work the same way: :func:`activity_key`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any, cast

from temporalio import workflow
from temporalio.worker import StartActivityInput


def activity_key(activity_type: str, activity_input: Mapping[str, Any]) -> str:
    """What identifies an activity's work: its node and its arguments (JSON).

    ``activity_input``: the LangGraph plugin's activity input as JSON (``args``, ``kwargs``);
    its ``langgraph_config`` (the run's context, task ids) and a ``config`` kwarg are left out:
    a moved run keeps its old run's context.
    """
    kwargs = {k: v for k, v in activity_input.get("kwargs", {}).items() if k != "config"}
    text = json.dumps([activity_type, activity_input.get("args"), kwargs], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def reused_result(input: StartActivityInput) -> workflow.ActivityHandle[Any] | None:
    """The old run's result of this activity, for a moved run (None: run the activity).

    Read back as the activity's result type, from a finished task in place of the activity.
    """
    reuse: dict[str, Any] = getattr(workflow.instance(), "reuse", {})
    if not reuse or not input.args:
        return None
    converter = workflow.payload_converter()
    activity_input = json.loads(converter.to_payload(input.args[0]).data)
    output = reuse.get(activity_key(input.activity, activity_input))
    if output is None:
        return None
    result: Any = converter.from_payload(converter.to_payload(output), input.ret_type or Any)

    async def finished() -> Any:
        return result

    return cast("workflow.ActivityHandle[Any]", asyncio.create_task(finished()))
