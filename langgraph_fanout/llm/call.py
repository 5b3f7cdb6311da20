"""The one LLM call every LLM node makes: a role's model, a prompt, a valid reply or an error."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar, overload

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.constants import TAG_NOSTREAM
from pydantic import BaseModel

from langgraph_fanout.llm.models import check_models, is_local, model_for, resolve_model
from langgraph_fanout.llm.retry import (
    LLMConnectionError,
    MalformedOutputError,
    openai_connection_error,
)
from langgraph_fanout.llm.spending import counted_call
from state.context import Context

Reply = TypeVar("Reply", bound=BaseModel)

# Streaming a structured reply (stream_mode="messages") makes langchain-openai 1.7 dump the
# parsed reply through an SDK model that types it None: a harmless pydantic warning, fixed
# upstream for replies that are not streamed only (langchain-ai/langchain#35538).
warnings.filterwarnings(
    "ignore",
    r"Pydantic serializer warnings:\s+PydanticSerializationUnexpectedValue\(Expected "
    r"`none`[^\n]*field_name='parsed'",
    UserWarning,
)


class StreamSlots:
    """At most ``size`` LLM calls at a time stream their reply token by token.

    Under ``stream_mode="messages"`` every call streams, and each streamed chunk costs CPU
    (the SDK's parse, callbacks): at a fan-out of 1,000 that is most of a run's CPU. A display
    that shows a few workers at a time sets :data:`STREAM_SLOTS` to one of these, so only as
    many calls stream as it can show; the others return their whole reply at once, and are
    left out of the ``messages`` stream altogether (``TAG_NOSTREAM``).
    """

    def __init__(self, size: int) -> None:
        self.free = size

    @contextmanager
    def take(self) -> Iterator[bool]:
        """Whether this call may stream (a slot is taken for its duration)."""
        if self.free <= 0:
            yield False
            return
        self.free -= 1
        try:
            yield True
        finally:
            self.free += 1


STREAM_SLOTS: ContextVar[StreamSlots | None] = ContextVar("fanout_stream_slots", default=None)
"""The run's :class:`StreamSlots`; None (the default): every call may stream."""


ADMISSION_KEY = "__fanout_admission"
"""Key, in a run config's ``configurable``, of what each LLM call of the run awaits before it
starts, which may hold it back or refuse it by raising (a run not sure it still holds its
thread waits: ``persistence/thread_lock.py``). In the config, which LangGraph hands to every
task, not in a context variable: the API servers step a run's stream in a new task each time,
so what the first step set, later steps' tasks would not see."""


def with_admission(config: RunnableConfig, admit: Callable[[], Awaitable[None]]) -> RunnableConfig:
    """``config`` whose run's LLM calls each await ``admit()`` before they start."""
    configurable = {**config.get("configurable", {}), ADMISSION_KEY: admit}
    return {**config, "configurable": configurable}


@contextmanager
def _may_stream(wanted: bool) -> Iterator[bool]:
    slots = STREAM_SLOTS.get()
    if slots is None or not wanted:
        yield wanted
        return
    with slots.take() as stream:
        yield stream


def _admission() -> Callable[[], Awaitable[None]] | None:
    try:
        return get_config().get("configurable", {}).get(ADMISSION_KEY)
    except RuntimeError:  # not inside a runnable
        return None


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
    role: str,
    prompt: list[BaseMessage],
    schema: type[Reply],
    *,
    local_schema: type[Reply] | None = None,
    labels: dict[str, str] | None = None,
) -> Reply: ...


@overload
async def call_model(
    context: Context,
    role: str,
    prompt: list[BaseMessage],
    schema: None = None,
    *,
    labels: dict[str, str] | None = None,
) -> str: ...


async def call_model(
    context: Context,
    role: str,
    prompt: list[BaseMessage],
    schema: type[Reply] | None = None,
    *,
    local_schema: type[Reply] | None = None,
    labels: dict[str, str] | None = None,
) -> Reply | str:
    """Ask ``role``'s model under ``context``: a ``schema`` instance, or the reply's text.

    ``local_schema`` (a subclass of ``schema``) is asked of the embedded model instead: its
    bounds keep a small model on track (the grammar follows them) and bind no other model.

    ``labels`` (e.g. the section a worker writes) go into the call's trace metadata, next to
    ``fanout_role``, ``fanout_model`` and ``fanout_structured`` (whether the reply is JSON for
    ``schema``); ``stream_mode="messages"`` hands the same metadata out with every token.

    Raises:
        ConfigurationError: a role's model cannot be loaded (every role is checked first).
        SpendingLimitReached: a limit of ``context`` keeps the call from starting.
        LLMConnectionError: the server could not be reached or timed out (retryable).
        MalformedOutputError: the reply is empty or not a valid ``schema`` (retryable).
    """
    check_models(context)
    if (admit := _admission()) is not None:
        await admit()
    model = resolve_model(context.model_for(role))
    metadata = {
        "fanout_role": role,
        "fanout_model": model,
        "fanout_structured": schema is not None,
    }
    expected = schema.__name__ if schema else "reply"
    if local_schema is not None and is_local(model):
        schema = local_schema
    try:
        async with counted_call(context) as usage:
            with _may_stream(schema is None) as stream:
                quiet = schema is None and not stream  # no slot: not in the messages stream
                config = RunnableConfig(
                    metadata=metadata | (labels or {}), tags=[TAG_NOSTREAM] if quiet else []
                )
                runnable = model_for(context, role, schema, stream=stream)
                reply = await runnable.ainvoke(prompt, config)
                usage.add(reply["raw"] if schema else reply)
        if schema is not None and (error := reply["parsing_error"]) is not None:
            raise error
    except ValueError as exc:  # the reply did not parse or validate
        raise MalformedOutputError(
            f"{current_node()}: the model's reply is not a valid {expected}: {exc}"
        ) from exc
    except Exception as exc:
        if not openai_connection_error(exc):
            raise
        # Timeouts too; the SDK says neither where.
        what = "timed out" if _timed_out(exc) else "cannot connect"
        request = exc.request  # type: ignore[attr-defined]  # an openai.APIConnectionError
        raise LLMConnectionError(
            f"{current_node()}: {what}: {request.method} {request.url}"
        ) from exc
    if schema is None:
        text = str(reply.text).strip()
        if not text:
            raise MalformedOutputError(f"{current_node()}: the model returned an empty reply")
        return text
    parsed = reply["parsed"]
    if not isinstance(parsed, schema):  # e.g. a tool call that did not parse: None
        raise MalformedOutputError(f"{current_node()}: the model returned no {expected}")
    return parsed


def _timed_out(exc: BaseException) -> bool:
    """Whether the request timed out, rather than finding no server.

    The SDK's aiohttp transport reports a refused connection as a timeout too (raised in
    openai-python PR 3594), so a ``ConnectionError`` among the causes decides.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionError):  # refused, reset, aborted
            return False
        cause = cause.__cause__
    return isinstance(exc, sys.modules["openai"].APITimeoutError)
