"""Continuous batching for the embedded model: concurrent calls decode together.

One :class:`Engine` per model file holds one llama.cpp context with ``n_parallel`` sequence
slots, each with its own KV-cache stream of ``n_ctx`` tokens (``kv_unified`` off, so a
sequence attends only to its own tokens). One scheduler thread owns the context: each step
it puts the next token of every generating sequence and the next chunk of every waiting
prompt into one ``llama_batch``, calls ``llama_decode`` once, then samples each sequence
with its own sampler chain (repetition penalty, DRY against verbatim repeats, the request's GBNF
grammar if any, greedy or temperature sampling). A call that finds every slot busy waits
for the next free one. Stop sequences are applied here, so the token count is exact.

It uses llama-cpp-python's public ctypes bindings (``llama_cpp.llama_cpp``).
"""

from __future__ import annotations

import codecs
import collections
import ctypes
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

N_BATCH = 512
"""Most tokens one decode step takes (generation tokens first, then prompt chunks)."""
_DRY_BREAKERS = (b"\n", b":", b'"', b"*")
_SENTENCE_END = re.compile(r"[.!?][\"')\]*]*$")


@dataclass(frozen=True)
class Finished:
    """The end of one call: why it ended and the tokens it used."""

    finish_reason: str
    """``"stop"`` (end of turn or a stop sequence) or ``"length"`` (``max_tokens`` reached)."""
    prompt_tokens: int
    completion_tokens: int


Event = str | Finished | BaseException
"""What a call receives: pieces of text, then a :class:`Finished` or an exception."""


@dataclass
class Request:
    """One completion to run."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    repeat_penalty: float
    seed: int | None
    grammar: str | None
    """GBNF text constraining the reply (root rule ``root``), or None."""
    stops: list[str]
    """Text that ends the reply where it appears (not included)."""
    prose: bool
    """Plain text: the turn may end only after a complete sentence, and once half of
    ``max_tokens`` is used it ends at the next sentence boundary (not mid-sentence at the cap)."""
    emit: Callable[[Event], None]
    """Receives the call's events, on the scheduler thread: it must not block."""
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set by the caller to abandon the call; its slot is freed at the next step."""


@dataclass
class _Slot:
    """A request being decoded in sequence ``seq``."""

    seq: int
    request: Request
    sampler: Any
    no_end: Any = None  # prose: the same pick with end-of-turn tokens banned
    fed: int = 0  # tokens of the sequence already decoded (its next position)
    next_token: int | None = None  # sampled, emitted, not yet decoded
    generated: int = 0
    held: str = ""  # text held back while it may be the start of a stop sequence
    tail: str = ""  # the last characters of the reply so far
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


def stop_at(text: str, stops: list[str]) -> int | None:
    """Where ``text`` must be cut: the start of its first stop sequence, if any."""
    found = [i for s in stops if (i := text.find(s)) != -1]
    return min(found) if found else None


def partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that could begin a stop sequence."""
    return max(
        (k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])),
        default=0,
    )


class Engine:
    """A loaded GGUF model decoding up to ``n_parallel`` calls in one batch."""

    def __init__(self, path: str, *, n_ctx: int, n_parallel: int, n_threads: int) -> None:
        """Load ``path`` with ``n_parallel`` slots of ``n_ctx`` tokens each.

        Raises:
            ValueError: The file does not load, or has no chat template.
        """
        import llama_cpp

        self._lib = llama_cpp
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's chatter
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(
            path.encode(), llama_cpp.llama_model_default_params()
        )
        if not self.model:
            raise ValueError(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        eog = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]
        self._no_eog = (llama_cpp.llama_logit_bias * len(eog))(
            *(llama_cpp.llama_logit_bias(t, float("-inf")) for t in eog)
        )
        template = llama_cpp.llama_model_chat_template(self.model, None)
        if not template:
            raise ValueError(f"{path} has no chat template in its metadata: use an instruct GGUF")
        self.chat_template: str = template.decode("utf-8")
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_parallel
        params.n_seq_max = n_parallel
        params.kv_unified = False  # a KV stream per sequence: each attends to its own tokens only
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_threads = params.n_threads_batch = n_threads
        self._ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self._ctx:
            raise ValueError(f"llama.cpp could not create a context for {path}")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)

        self._lock = threading.Condition()
        self._waiting: collections.deque[Request] = collections.deque()
        self._free = list(range(n_parallel))
        self._slots: list[_Slot] = []
        self.max_batch = 0
        """Most sequences that shared one decode step so far (for tests and benchmarks)."""
        threading.Thread(target=self._serve, name="llama-cpp-batch", daemon=True).start()

    # ---- text <-> tokens ------------------------------------------------------------------

    def token_text(self, token: int) -> str:
        """The text of a (special) token, e.g. ``<|im_end|>``."""
        return (self._lib.llama_vocab_get_text(self.vocab, token) or b"").decode("utf-8")

    def special_tokens(self) -> tuple[int, int]:
        """The end-of-sequence and beginning-of-sequence token ids (-1: none)."""
        return self._lib.llama_vocab_eos(self.vocab), self._lib.llama_vocab_bos(self.vocab)

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """``text`` as tokens; special tokens written as text (``<|im_start|>``) are parsed."""
        data = text.encode("utf-8")
        size = len(data) + 2
        while True:
            buffer = (self._lib.llama_token * size)()
            n = self._lib.llama_tokenize(self.vocab, data, len(data), buffer, size, add_bos, True)
            if n >= 0:
                return list(buffer[:n])
            size = -n

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self.vocab, token, buffer, -n, 0, False)
        return buffer.raw[:n]

    # ---- calls ----------------------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Queue ``request``; its events go to ``request.emit`` from the scheduler thread.

        Raises:
            ValueError: The prompt and ``max_tokens`` do not fit in one slot's context.
        """
        if not request.prompt:
            raise ValueError("empty prompt")
        if len(request.prompt) + request.max_tokens > self.n_ctx:
            raise ValueError(
                f"the prompt is {len(request.prompt)} tokens but the local model's context "
                f"holds {self.n_ctx}: shorten the input or raise n_ctx"
            )
        sampler = self._sampler(request)  # a bad grammar fails here, in the caller
        self._lib.llama_sampler_free(sampler)
        with self._lock:
            self._waiting.append(request)
            self._lock.notify()

    def busy(self) -> int:
        """How many calls hold a slot or wait for one."""
        with self._lock:
            return len(self._slots) + len(self._waiting)

    def _sampler(self, request: Request) -> Any:
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(
            chain,
            lib.llama_sampler_init_penalties(
                self.n_vocab, 64 if request.prose else 256, request.repeat_penalty, 0, 0
            ),
        )
        breakers = (ctypes.c_char_p * len(_DRY_BREAKERS))(*_DRY_BREAKERS)
        lib.llama_sampler_chain_add(  # DRY: penalises extending a verbatim repeat
            chain,
            lib.llama_sampler_init_dry(
                self.vocab, 0.8, 1.75, 2, self.n_ctx, breakers, len(breakers)
            ),
        )
        if request.grammar is not None:
            grammar = lib.llama_sampler_init_grammar(
                self.vocab, request.grammar.encode("utf-8"), b"root"
            )
            if not grammar:
                lib.llama_sampler_free(chain)
                raise ValueError("llama.cpp rejected the grammar")
            lib.llama_sampler_chain_add(chain, grammar)
        self._add_pick(chain, request)
        return chain

    def _no_end_sampler(self, request: Request) -> Any:
        """A chain that picks like ``request``'s but never ends the turn."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(
            chain, lib.llama_sampler_init_logit_bias(self.n_vocab, len(self._no_eog), self._no_eog)
        )
        self._add_pick(chain, request)
        return chain

    def _add_pick(self, chain: Any, request: Request) -> None:
        """Greedy at temperature 0, else top-k/top-p/min-p and a seeded draw."""
        lib = self._lib
        if request.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return
        seed = lib.LLAMA_DEFAULT_SEED if request.seed is None else request.seed
        for sampler in (
            lib.llama_sampler_init_top_k(40),
            lib.llama_sampler_init_top_p(0.95, 1),
            lib.llama_sampler_init_min_p(0.05, 1),
            lib.llama_sampler_init_temp(request.temperature),
            lib.llama_sampler_init_dist(seed),
        ):
            lib.llama_sampler_chain_add(chain, sampler)

    # ---- the scheduler thread -------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            admitted: list[tuple[int, Request]] = []
            with self._lock:
                while not self._waiting and not self._slots:
                    self._lock.wait()
                while self._waiting and self._free:
                    request = self._waiting.popleft()
                    if not request.cancel.is_set():
                        admitted.append((self._free.pop(0), request))
            for seq, request in admitted:
                try:
                    sampler = self._sampler(request)
                except ValueError as exc:
                    with self._lock:
                        self._free.append(seq)
                    request.emit(exc)
                    continue
                no_end = self._no_end_sampler(request) if request.prose else None
                with self._lock:
                    self._slots.append(_Slot(seq, request, sampler, no_end))
            try:
                self._step()
            except Exception as exc:  # a failed decode fails every call in flight
                logger.exception("embedded model: decode step failed")
                for slot in list(self._slots):
                    self._release(slot, exc)

    def _step(self) -> None:
        """One decode: a token for every generating slot, prompt chunks while room is left."""
        lib, batch = self._lib, self._batch
        batch.n_tokens = 0
        outputs: list[tuple[_Slot, int]] = []

        def add(slot: _Slot, token: int, logits: bool) -> None:
            i = batch.n_tokens
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, slot.fed, 1
            batch.seq_id[i][0], batch.logits[i] = slot.seq, logits
            batch.n_tokens += 1
            slot.fed += 1
            if logits:
                outputs.append((slot, i))

        for slot in list(self._slots):
            if slot.request.cancel.is_set():
                self._release(slot, None)
            elif slot.next_token is not None:
                add(slot, slot.next_token, True)
        for slot in self._slots:
            prompt = slot.request.prompt
            while slot.next_token is None and slot.fed < len(prompt) and batch.n_tokens < N_BATCH:
                add(slot, prompt[slot.fed], slot.fed == len(prompt) - 1)
        if not batch.n_tokens:
            return
        self.max_batch = max(self.max_batch, len(outputs))
        if (status := lib.llama_decode(self._ctx, batch)) != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        for slot, index in outputs:
            self._sample(slot, index)

    def _sample(self, slot: _Slot, index: int) -> None:
        lib, request = self._lib, slot.request
        token = lib.llama_sampler_sample(slot.sampler, self._ctx, index)
        if (
            slot.no_end is not None
            and lib.llama_vocab_is_eog(self.vocab, token)
            and not _SENTENCE_END.search(slot.tail)
        ):  # prose does not end mid-sentence: pick the best token that goes on
            token = lib.llama_sampler_sample(slot.no_end, self._ctx, index)
            lib.llama_sampler_accept(slot.sampler, token)
        if lib.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, "stop")
            return
        piece = slot.decoder.decode(self._piece(token))
        if (
            request.prose
            and 2 * slot.generated >= request.max_tokens
            and piece[:1].isspace()
            and _SENTENCE_END.search(slot.tail)
        ):
            self._finish(slot, "stop")  # a sentence just ended and the budget is half spent
            return
        slot.generated += 1
        slot.held += piece
        slot.tail = (slot.tail + piece)[-8:]
        if (cut := stop_at(slot.held, request.stops)) is not None:
            slot.held = slot.held[:cut]
            self._finish(slot, "stop")
            return
        if slot.generated >= request.max_tokens:
            self._finish(slot, "length")
            return
        ready = len(slot.held) - partial_stop(slot.held, request.stops)
        if ready > 0:
            request.emit(slot.held[:ready])
            slot.held = slot.held[ready:]
        slot.next_token = token

    def _finish(self, slot: _Slot, reason: str) -> None:
        slot.held += slot.decoder.decode(b"", final=True)
        if slot.held:
            slot.request.emit(slot.held)
        prompt = len(slot.request.prompt)
        self._release(slot, Finished(reason, prompt, slot.generated))

    def _release(self, slot: _Slot, event: Finished | BaseException | None) -> None:
        self._lib.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
        self._lib.llama_sampler_free(slot.sampler)
        if slot.no_end is not None:
            self._lib.llama_sampler_free(slot.no_end)
        with self._lock:
            self._slots.remove(slot)
            self._free.append(slot.seq)
        if event is not None:
            slot.request.emit(event)


_ENGINES: dict[tuple[str, int, int, int], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(path: str, *, n_ctx: int, n_parallel: int, n_threads: int) -> Engine:
    """The process's engine for these settings, loading the model the first time."""
    key = (path, n_ctx, n_parallel, n_threads)
    with _ENGINES_LOCK:
        if (engine := _ENGINES.get(key)) is None:
            engine = _ENGINES[key] = Engine(
                path, n_ctx=n_ctx, n_parallel=n_parallel, n_threads=n_threads
            )
        return engine
