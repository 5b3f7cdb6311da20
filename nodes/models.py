"""The one model factory: ``provider:model`` strings to chat models, cached per settings."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from state.context import Context, Role

DEFAULT_MODEL = "openai:gpt-4.1-mini"
"""The model used when an OpenAI key is set and nothing else is asked for."""
LOCAL_MODEL = "local"
"""Spec of the embedded model; ``local:/path/to/model.gguf`` picks other weights."""

logger = logging.getLogger(__name__)


def resolve_model(spec: str = "") -> str:
    """The model to use for ``spec``: itself, else $FANOUT_MODEL, else OpenAI with a key, else local."""
    if spec:
        return spec
    if env_model := os.environ.get("FANOUT_MODEL"):
        return env_model
    return DEFAULT_MODEL if os.environ.get("OPENAI_API_KEY") else LOCAL_MODEL


def is_local(spec: str) -> bool:
    """Whether ``spec`` names the embedded llama.cpp model."""
    return spec == LOCAL_MODEL or spec.startswith(LOCAL_MODEL + ":")


@lru_cache(maxsize=64)
def load_chat_model(spec: str, temperature: float, max_tokens: int, timeout: float) -> BaseChatModel:
    """Build (once per distinct settings) the chat model named by a resolved ``spec``."""
    if is_local(spec):
        from nodes.local_model import load_local_chat_model

        path = spec.partition(":")[2] or None
        return load_local_chat_model(path, temperature=temperature, max_tokens=max_tokens)
    if ":" not in spec:
        raise ValueError(f"model {spec!r} must be 'provider:model', e.g. {DEFAULT_MODEL!r}")
    logger.debug("loading chat model %s", spec)
    # Retries belong to the graph's RetryPolicy, so the client itself makes one attempt.
    return init_chat_model(
        spec, temperature=temperature, max_tokens=max_tokens, timeout=timeout, max_retries=0
    )


@lru_cache(maxsize=256)
def _runnable(
    spec: str,
    temperature: float,
    max_tokens: int,
    timeout: float,
    schema: type[BaseModel] | None,
) -> Runnable:
    model = load_chat_model(spec, temperature, max_tokens, timeout)
    return model.with_structured_output(schema) if schema else model


def model_for(context: Context, role: Role, schema: type[BaseModel] | None = None) -> Runnable:
    """The runnable that plays ``role`` under ``context``, structured to ``schema`` if given."""
    spec = resolve_model(context.model_for(role))
    return _runnable(spec, context.temperature, context.max_tokens, context.timeout, schema)
