"""The one model factory: ``provider:model`` strings to chat models, cached per settings."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, get_args
from weakref import WeakKeyDictionary

import httpx
from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from nodes.retry import CLIENT_RETRIES
from state.context import ConfigurationError, Context, Role

DEFAULT_MODEL = "openai:gpt-4.1-mini"
"""The model used when an OpenAI key is set and nothing else is asked for."""
LOCAL_MODEL = "local"
"""Spec of the embedded model; ``local:/path/to/model.gguf`` picks other weights."""

logger = logging.getLogger(__name__)

_Key = tuple[str, float, int, float, type[BaseModel] | None]
# Async HTTP clients are bound to the event loop that first used them, so every loop gets
# its own models (``asyncio.run`` twice in one process must work); sync use shares one set.
_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, Runnable]] = WeakKeyDictionary()
_sync: dict[_Key, Runnable] = {}


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


def load_chat_model(
    spec: str, temperature: float, max_tokens: int, timeout: float
) -> BaseChatModel:
    """A new chat model for a resolved ``spec`` (use :func:`model_for` in nodes: it caches).

    Raises:
        ConfigurationError: the model cannot be loaded (unknown provider, provider package
            missing, no API key, weights file missing...).
    """
    try:
        if is_local(spec):
            from nodes.local_model import load_local_chat_model

            path = spec.partition(":")[2] or None
            return load_local_chat_model(path, temperature=temperature, max_tokens=max_tokens)
        provider, _, name = spec.partition(":")
        if not (provider and name):
            raise ValueError(f"must be 'provider:model', e.g. {DEFAULT_MODEL!r}")
        logger.debug("loading chat model %s", spec)
        # An httpx.Timeout (unhashable) makes langchain-openai give this instance its own HTTP
        # client instead of a process-wide one tied to the first event loop.
        request_timeout: Any = httpx.Timeout(timeout) if provider == "openai" else timeout
        return init_chat_model(
            spec,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=request_timeout,
            max_retries=CLIENT_RETRIES,
        )
    except Exception as exc:
        raise ConfigurationError(f"model {spec!r}: {exc}") from exc


def model_for(context: Context, role: Role, schema: type[BaseModel] | None = None) -> Runnable:
    """The runnable that plays ``role`` under ``context``, structured to ``schema`` if given.

    Raises:
        ConfigurationError: the role's model cannot be loaded (the message names the role).
    """
    key: _Key = (
        resolve_model(context.model_for(role)),
        context.temperature,
        context.max_tokens,
        context.timeout,
        schema,
    )
    try:
        cache = _by_loop.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:  # no running loop: a sync call
        cache = _sync
    if (runnable := cache.get(key)) is None:
        try:
            model = load_chat_model(*key[:4])
        except ConfigurationError as exc:
            raise ConfigurationError(f"{role} {exc}") from exc.__cause__
        runnable = cache[key] = model.with_structured_output(schema) if schema else model
    return runnable


def check_models(context: Context) -> None:
    """Load the model of every role, so a bad setting fails before the run's first LLM call.

    Raises:
        ConfigurationError: a role's model cannot be loaded.
    """
    for role in get_args(Role):
        model_for(context, role)
