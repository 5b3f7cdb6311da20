"""Bad input is refused with a clear message before any LLM call."""

import pytest

from graphs.article import graph as article
from graphs.evaluation import graph as evaluation
from graphs.research import graph as research
from state.inputs import MAX_TEXT_CHARS, MAX_TOPIC_CHARS, InvalidInputError

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
