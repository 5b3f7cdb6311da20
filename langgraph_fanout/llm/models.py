"""The one model factory: ``provider:model`` strings to chat models, cached per settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from langgraph_fanout.llm.retry import CLIENT_RETRIES
from state.context import MAX_SECTIONS_LIMIT, ConfigurationError, Context

if TYPE_CHECKING:
    import httpx2

DEFAULT_MODEL = "openai:gpt-4.1-mini"
"""The model used when an OpenAI key is set and nothing else is asked for."""
LOCAL_MODEL = "local"
"""Spec of the embedded model; ``local:/path/to/model.gguf`` picks other weights."""

logger = logging.getLogger(__name__)

_Key = tuple[str, float, int, float, int, type[BaseModel] | None, bool]


@dataclass
class _LoopModels:
    """The models of one event loop, and the HTTP clients to close when that loop ends."""

    runnables: dict[_Key, Runnable] = field(default_factory=dict)
    clients: list[httpx2.AsyncClient] = field(default_factory=list)
    checked: set[tuple[Context, str]] = field(default_factory=set)  # check_models passed
    closer: AsyncGenerator[None, None] | None = None  # the loop refers to it weakly: keep it


# Async HTTP clients are bound to the event loop that first used them, so every loop gets
# its own models (``asyncio.run`` twice in one process must work).
_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopModels] = WeakKeyDictionary()


def resolve_model(spec: str = "") -> str:
    """``spec`` if set, else $FANOUT_MODEL, else OpenAI when a key is set, else the local model."""
    if spec:
        return spec
    if env_model := os.environ.get("FANOUT_MODEL"):
        return env_model
    return DEFAULT_MODEL if os.environ.get("OPENAI_API_KEY") else LOCAL_MODEL


def is_local(spec: str) -> bool:
    """Whether ``spec`` names the embedded llama.cpp model."""
    return spec == LOCAL_MODEL or spec.startswith(LOCAL_MODEL + ":")


def import_model_sdks() -> None:
    """Import now what the first OpenAI-compatible :func:`load_chat_model` would (~1.4 s of CPU).

    For a server, as it starts: in its first run these imports would stall the event loop that
    all its runs share, and Aegra's lease heartbeats with them (a replica whose heartbeats stop
    for the lease's length loses its runs to another).
    """
    import httpx2  # noqa: F401
    import langchain_openai  # noqa: F401
    import openai  # noqa: F401
    from langchain.chat_models import init_chat_model  # noqa: F401


def load_chat_model(
    spec: str, temperature: float, max_tokens: int, timeout: float, retries: int = CLIENT_RETRIES
) -> BaseChatModel:
    """A new chat model for a resolved ``spec`` (use :func:`model_for` in nodes: it caches).

    ``retries``: how often its client repeats a failed request by itself.

    An OpenAI model's async HTTP client (``http_async_client``) belongs to the caller: close it
    when done (:func:`model_for` does, when its event loop ends).

    Raises:
        ConfigurationError: the model cannot be loaded (unknown provider, provider package
            missing, no API key, weights file missing...).
    """
    try:
        if is_local(spec):
            from langgraph_fanout.engine.chat_model import load_local_chat_model

            path = spec.partition(":")[2] or None
            return load_local_chat_model(path, temperature=temperature, max_tokens=max_tokens)
        provider, _, name = spec.partition(":")
        if not (provider and name):
            raise ValueError(f"must be 'provider:model', e.g. {DEFAULT_MODEL!r}")
        logger.debug("loading chat model %s", spec)
        # Imported here: a process that reads runs but calls no model (``fanout runs``, a
        # Temporal client) does without the SDKs (~0.8 s of imports).
        import httpx2
        import openai
        from langchain.chat_models import init_chat_model

        http: dict[str, Any] = {}
        if provider == "openai":
            # The SDK's aiohttp transport: its default httpx pool re-scans every connection per
            # request, a CPU cost that grows with the square of the requests in flight.
            http["http_async_client"] = openai.DefaultAioHttpClient(
                timeout=timeout,
                limits=httpx2.Limits(max_connections=MAX_SECTIONS_LIMIT),  # the widest fan-out
            )
            # Token usage of streamed replies too (langchain-openai asks for it only from
            # api.openai.com): the CLI's live view streams, and still reports tokens.
            http["stream_usage"] = True
        return init_chat_model(
            spec,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
            max_retries=retries,
            **http,
        )
    except Exception as exc:
        raise ConfigurationError(f"model {spec!r}: {exc}") from exc


def model_for(
    context: Context, role: str, schema: type[BaseModel] | None = None, *, stream: bool = True
) -> Runnable:
    """The runnable that plays ``role`` under ``context``: its reply, a message.

    With ``schema``: ``{"raw": message, "parsed": schema instance or None, "parsing_error":
    exception or None}`` (``include_raw``: the message says what the call used).

    Cached per running event loop; its HTTP clients are closed when the loop shuts down
    (``asyncio.run`` finalizes async generators as it ends). ``stream=False``: a model that
    never streams its reply, even under ``stream_mode="messages"`` (a structured one never
    does).

    Raises:
        ConfigurationError: the role's model cannot be loaded (the message names the role).
    """
    key: _Key = (
        resolve_model(context.model_for(role)),
        context.temperature,
        context.max_tokens,
        context.timeout,
        # Under a call limit every request is a call the run counts: the graph's retry policy
        # repeats it (counted), the client does not (it would repeat unseen).
        0 if context.max_llm_calls is not None else CLIENT_RETRIES,
        schema,
        stream and schema is None,
    )
    models = _models_of(asyncio.get_running_loop())
    if (runnable := models.runnables.get(key)) is None:
        try:
            model = load_chat_model(*key[:5])
        except ConfigurationError as exc:
            raise ConfigurationError(f"{role} {exc}") from exc.__cause__
        if (client := getattr(model, "http_async_client", None)) is not None:
            models.clients.append(client)
        if not key[-1]:
            # JSON for a parser is not streamed either: nobody reads it, and the OpenAI SDK
            # re-parses the whole partial reply at every chunk (quadratic in its length).
            model = model.model_copy(update={"disable_streaming": True})
        runnable = models.runnables[key] = (
            model.with_structured_output(schema, include_raw=True) if schema else model
        )
    return runnable


def check_models(context: Context) -> None:
    """Load the model of every workflow's every role: a bad setting fails before any LLM call.

    Raises:
        ConfigurationError: a role's model cannot be loaded.
    """
    from langgraph_fanout.workflows import ROLES  # not at import: an entry's module may import this

    checked = _models_of(asyncio.get_running_loop()).checked
    if (context, resolve_model()) in checked:  # the default model comes from the environment
        return
    for role in ROLES:
        model_for(context, role)
    checked.add((context, resolve_model()))


def _models_of(loop: asyncio.AbstractEventLoop) -> _LoopModels:
    """``loop``'s models, set up to close their clients when the loop shuts down."""
    if (models := _by_loop.get(loop)) is None:
        models = _by_loop[loop] = _LoopModels()
        closer = models.closer = _close_at_shutdown(models)
        with contextlib.suppress(StopIteration):  # run it to its ``yield``: the loop tracks it
            closer.asend(None).send(None)
    return models


async def _close_at_shutdown(models: _LoopModels) -> AsyncGenerator[None, None]:
    """Wait at ``yield`` until the loop's ``shutdown_asyncgens()``, then close the clients."""
    try:
        yield
    finally:
        for client in models.clients:
            await client.aclose()
        # Clients and this generator refer to the loop: drop them, so the loop can be freed.
        models.runnables.clear()
        models.clients.clear()
        models.closer = None
