"""The one LLM call every LLM node makes: a role's model, a prompt, a valid reply or an error."""

from __future__ import annotations

from typing import TypeVar, overload

import openai
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from pydantic import BaseModel

from nodes.models import check_models, model_for, resolve_model
from nodes.retry import LLMConnectionError, MalformedOutputError
from state.context import Context, Role

Reply = TypeVar("Reply", bound=BaseModel)


def messages(system: str, user: str) -> list[BaseMessage]:
    """A system prompt and one user turn."""
    return [SystemMessage(system), HumanMessage(user)]


def current_node() -> str:
    """The name of the graph node being run ("" outside a graph run), for error messages."""
    try:
        return str(get_config().get("metadata", {}).get("langgraph_node", ""))
    except RuntimeError:  # not inside a runnable
        return ""


@overload
async def call_model(
    context: Context,
    role: Role,
    prompt: list[BaseMessage],
    schema: type[Reply],
    *,
    labels: dict[str, str] | None = None,
) -> Reply: ...


@overload
async def call_model(
    context: Context,
    role: Role,
    prompt: list[BaseMessage],
    schema: None = None,
    *,
    labels: dict[str, str] | None = None,
) -> str: ...


async def call_model(
    context: Context,
    role: Role,
    prompt: list[BaseMessage],
    schema: type[Reply] | None = None,
    *,
    labels: dict[str, str] | None = None,
) -> Reply | str:
    """Ask ``role``'s model under ``context``: a ``schema`` instance, or the reply's text.

    ``labels`` (e.g. the section a worker writes) go into the call's trace metadata.

    Raises:
        ConfigurationError: a role's model cannot be loaded (every role is checked first).
        LLMConnectionError: the server could not be reached or timed out (retryable).
        MalformedOutputError: the reply is empty or not a valid ``schema`` (retryable).
    """
    check_models(context)
    model = model_for(context, role, schema)
    metadata = {"fanout_role": role, "fanout_model": resolve_model(context.model_for(role))}
    config = RunnableConfig(metadata=metadata | (labels or {}))
    expected = schema.__name__ if schema else "reply"
    try:
        reply = await model.ainvoke(prompt, config)
    except openai.APIConnectionError as exc:  # includes timeouts; the SDK says neither where
        what = "timed out" if _timed_out(exc) else "cannot connect"
        raise LLMConnectionError(
            f"{current_node()}: {what}: {exc.request.method} {exc.request.url}"
        ) from exc
    except ValueError as exc:  # the reply did not parse or validate
        raise MalformedOutputError(
            f"{current_node()}: the model's reply is not a valid {expected}: {exc}"
        ) from exc
    if schema is None:
        text = str(reply.text).strip()
        if not text:
            raise MalformedOutputError(f"{current_node()}: the model returned an empty reply")
        return text
    if not isinstance(reply, schema):  # e.g. a tool call that did not parse: None
        raise MalformedOutputError(f"{current_node()}: the model returned no {expected}")
    return reply


def _timed_out(exc: openai.APIConnectionError) -> bool:
    """Whether the request timed out, rather than finding no server.

    The SDK's aiohttp transport reports a refused connection as a timeout too (raised in
    openai-python PR 3594), so a ``ConnectionError`` among the causes decides.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionError):  # refused, reset, aborted
            return False
        cause = cause.__cause__
    return isinstance(exc, openai.APITimeoutError)
