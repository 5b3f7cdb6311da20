"""Every LLM node retries transient provider errors and malformed output, then fails clearly."""

import openai
import pytest

from graphs.evaluation import graph as evaluation
from graphs.research import graph as research
from langgraph_fanout.llm.retry import CLIENT_RETRIES, LLM_ATTEMPTS, MalformedOutputError
from nodes.prompts import CRITERIA
from state.context import Context

SAFETY = CRITERIA["safety"]
TEXT = "A recipe for lemonade."


@pytest.mark.parametrize("fault", ["500", "429", "invalid_json", "schema_violation"], ids=str)
async def test_a_fault_once_is_retried_and_the_run_succeeds(fake_llm, fault):
    fake_llm.add_rules({"match": SAFETY, "fault": fault, "times": 1, "retry_after": 0})

    result = await evaluation.ainvoke({"text": TEXT})

    attempts = fake_llm.requests_matching(SAFETY)
    assert [r["fault"] for r in attempts] == [fault, None]
    assert result["votes"] == 3
    assert len(fake_llm.requests_matching(schema="AggregatedVerdict")) == 1


async def test_a_hung_request_times_out_and_is_retried(fake_llm):
    fake_llm.add_rules({"match": SAFETY, "fault": "hang", "times": 1})

    result = await evaluation.ainvoke({"text": TEXT}, context=Context(timeout=0.5))

    assert len(fake_llm.requests_matching(SAFETY)) == 2
    assert result["votes"] == 3


async def test_an_empty_text_reply_is_retried(fake_llm):
    fake_llm.add_rules({"match": "Research question", "fault": "empty", "times": 1})

    result = await research.ainvoke({"topic": "Bees"})

    assert result["task_count"] == 3
    researchers = [r for r in fake_llm.log() if r["last_user"].startswith("Research question")]
    assert [r["fault"] for r in researchers].count("empty") == 1
    assert len(researchers) == 4


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("500", openai.InternalServerError, "Error code: 500"),
        (
            "invalid_json",
            MalformedOutputError,
            "(?s)evaluate_safety: .* not a valid Verdict.*Invalid JSON",
        ),
    ],
    ids=["500", "invalid_json"],
)
async def test_a_fault_on_every_attempt_names_the_node_and_cause(fake_llm, fault, error, message):
    fake_llm.add_rules({"match": SAFETY, "fault": fault})

    with pytest.raises(error, match=message) as raised:
        await evaluation.ainvoke({"text": TEXT})

    per_attempt = CLIENT_RETRIES + 1 if fault == "500" else 1  # the client repeats 5xx itself
    assert len(fake_llm.requests_matching(SAFETY)) == LLM_ATTEMPTS * per_attempt
    assert any("evaluate_safety" in note for note in raised.value.__notes__)
    assert fake_llm.requests_matching(schema="AggregatedVerdict") == []
