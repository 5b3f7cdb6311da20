"""Bad input is refused with a clear message before any LLM call."""

import json
import uuid

import pytest
from langgraph.types import Command

from graphs.article import graph as article
from graphs.evaluation import graph as evaluation
from graphs.research import graph as research
from langgraph_fanout.cli.terminal import printable, to_json
from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.workflows import WORKFLOWS
from nodes.plans import clean_text
from state.inputs import (
    BIDI_CONTROLS,
    BIDI_MARKS,
    LINE_SEPARATORS,
    MAX_TEXT_CHARS,
    MAX_TOPIC_CHARS,
    InvalidInputError,
)
from state.review import heading, one_line
from tests.fanout_cli import saved_rows

CASES = [
    ({"text": ""}, "at least 1 character"),
    ({"text": " \n\t "}, "must not be empty or only whitespace"),
    ({"text": 42}, "valid string"),
    ({"text": None}, "valid string"),
    ({"text": "x" * (MAX_TEXT_CHARS + 1)}, f"at most {MAX_TEXT_CHARS} characters"),
    ({}, "Field required"),
]


@pytest.mark.parametrize(("payload", "message"), CASES, ids=lambda v: str(v)[:20])
async def test_evaluation_refuses_bad_text(fake_llm, payload, message):
    with pytest.raises(InvalidInputError, match=message):
        await evaluation.ainvoke(payload)
    assert fake_llm.log() == []


@pytest.mark.parametrize("graph", [article, research], ids=["article", "research"])
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"topic": "   "}, "must not be empty"),
        ({"topic": ["a"]}, "valid string"),
        ({"topic": "t" * (MAX_TOPIC_CHARS + 1)}, f"at most {MAX_TOPIC_CHARS} characters"),
        ({"subject": "tea"}, "topic: Field required"),
    ],
    ids=["blank", "list", "huge", "missing"],
)
def test_topic_graphs_refuse_bad_topics(fake_llm, graph, payload, message):
    with pytest.raises(InvalidInputError, match=message):
        graph.invoke(payload)
    assert fake_llm.log() == []


def test_input_at_the_size_limit_is_accepted(fake_llm):
    result = evaluation.invoke({"text": "y" * MAX_TEXT_CHARS})
    assert result["votes"] == 3


# --- invisible characters that reorder text or break lines -----------------------------------


@pytest.mark.parametrize("char", sorted(BIDI_CONTROLS), ids=lambda c: f"U+{ord(c):04X}")
def test_bidirectional_controls_are_refused_before_any_call(fake_llm, char):
    expected = rf"bidirectional control characters \(U\+{ord(char):04X} at position 4\)"
    with pytest.raises(InvalidInputError, match=expected):
        research.invoke({"topic": f"tide{char}s"})
    with pytest.raises(InvalidInputError, match=expected):
        evaluation.invoke({"text": f"Some{char} text"})
    assert fake_llm.log() == []


@pytest.mark.parametrize(
    "char", sorted(BIDI_MARKS | LINE_SEPARATORS), ids=lambda c: f"U+{ord(c):04X}"
)
def test_bidirectional_marks_and_line_separators_are_accepted(fake_llm, char):
    topic = f"שלום{char} and tides"
    result = research.invoke({"topic": topic})
    assert result["task_count"] == 3
    assert topic in fake_llm.log()[0]["last_user"]  # the model gets the topic as written


@pytest.mark.parametrize(
    "char", sorted(BIDI_CONTROLS | BIDI_MARKS | LINE_SEPARATORS), ids=lambda c: f"U+{ord(c):04X}"
)
def test_they_are_escaped_for_the_terminal_and_in_json(char):
    text = f"a{char}b"
    shown = f"a\\u{ord(char):04x}b"
    assert printable(text) == printable(text, one_line=True) == shown
    assert to_json({"v": text}) == f'{{"v": "{shown}"}}'
    assert json.loads(to_json({"v": text})) == {"v": text}  # the value itself is intact


def test_a_models_plan_loses_its_bidirectional_controls_and_line_breaks():
    assert clean_text("Why\u202e do tides\u2028turn?\u2069", 100) == "Why do tides turn?"
    assert clean_text("\u200fשלום", 100) == "\u200fשלום"  # a mark stays: RTL text uses it
    with pytest.raises(ValueError, match="U\\+2028 at position 3"):
        heading("One\u2028Two")
    assert one_line("One\u2029Two") == "One Two"


# --- refused input leaves nothing behind -------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "runs.sqlite")


BAD_RUNS = [
    ("research", {"topic": "a \x1b]0;owned\x07 b"}),
    ("research", {"topic": "NUL \x00 here"}),
    ("article", {"topic": 42}),
    ("article", {"topic": "tides \u202e"}),
    ("evaluation", {"text": " \u200b "}),
    ("research", Command(update={"topic": "a\x1bb"})),
    ("evaluation", Command(update={"text": ""})),
]


@pytest.mark.parametrize(("name", "payload"), BAD_RUNS, ids=lambda v: repr(v)[:24])
async def test_refused_input_leaves_no_checkpoint(fake_llm, db, name, payload):
    thread = f"bad-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}}
    async with aopen_checkpointer(db) as saver:
        graph = WORKFLOWS[name].compile(saver)
        with pytest.raises(InvalidInputError):
            await graph.ainvoke(payload, config)
        with pytest.raises(InvalidInputError):
            graph.invoke(payload, config)
    assert set(saved_rows(db, thread).values()) == {0}
    assert fake_llm.log() == []
