"""A graph node that makes exactly one LLM call, usable from ``invoke`` and ``ainvoke`` alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph._internal._runnable import RunnableCallable
from langgraph.runtime import get_runtime
from pydantic import BaseModel

from nodes.models import model_for, resolve_model
from nodes.retry import MalformedOutputError
from state.context import Context, Role

Prompt = Callable[[Any, Context], list[BaseMessage]]
Update = Callable[[Any, Any, Context], dict[str, Any]]
Describe = Callable[[Any], dict[str, str]]


def run_context() -> Context:
    """The current run's settings (defaults when the caller passed none)."""
    return get_runtime(Context).context or Context()


def messages(system: str, user: str) -> list[BaseMessage]:
    """A system prompt and one user turn."""
    return [SystemMessage(system), HumanMessage(user)]


def llm_node(
    name: str,
    *,
    role: Role,
    prompt: Prompt,
    update: Update,
    schema: type[BaseModel] | None = None,
    describe: Describe | None = None,
) -> RunnableCallable:
    """A node named ``name``: ``prompt`` the ``role``'s model, turn its reply into an ``update``.

    The reply is a ``schema`` instance when a schema is given, else the reply text. The
    model is chosen per run from the ``Context``; the async form never blocks the loop.
    ``describe`` labels the LLM call's trace metadata (e.g. which section a worker writes).
    """

    def config(state: Any, context: Context) -> RunnableConfig:
        metadata = {"fanout_role": role, "fanout_model": resolve_model(context.model_for(role))}
        return RunnableConfig(metadata=metadata | (describe(state) if describe else {}))

    def malformed(exc: ValueError) -> MalformedOutputError:
        expected = schema.__name__ if schema else "reply"
        return MalformedOutputError(f"{name}: the model's reply is not a valid {expected}: {exc}")

    def reply_of(raw: Any) -> Any:
        if schema is None:
            if not raw.text.strip():
                raise MalformedOutputError(f"{name}: the model returned an empty reply")
            return raw.text.strip()
        if raw is None:
            raise MalformedOutputError(f"{name}: the model returned no {schema.__name__}")
        return raw

    def call(state: Any) -> dict[str, Any]:
        context = run_context()
        request = prompt(state, context)
        try:
            raw = model_for(context, role, schema).invoke(request, config(state, context))
        except ValueError as exc:  # the reply did not parse or validate
            raise malformed(exc) from exc
        return update(state, reply_of(raw), context)

    async def acall(state: Any) -> dict[str, Any]:
        context = run_context()
        request = prompt(state, context)
        try:
            raw = await model_for(context, role, schema).ainvoke(request, config(state, context))
        except ValueError as exc:  # the reply did not parse or validate
            raise malformed(exc) from exc
        return update(state, reply_of(raw), context)

    # trace=False: the graph already traces the node; no nested run of the same name.
    return RunnableCallable(call, acall, name=name, trace=False)
