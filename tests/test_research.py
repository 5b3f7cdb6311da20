"""The research graph: 2-4 questions, one researcher each, a report from all findings."""

import pytest

from graphs.research import graph
from langgraph_fanout.llm.retry import LLM_ATTEMPTS, MalformedOutputError


def questions(*items: str) -> dict:
    return {"questions": list(items)}


async def test_report_combines_every_finding_in_plan_order(fake_llm):
    asked = ["What is it?", "Why now?", "Who uses it?", "What next?"]
    fake_llm.add_rules(
        {"schema": "ResearchPlan", "response": questions(*asked)},
        {"match": "What is it?", "latency": 0.3},  # the first finishes last
    )

    result = await graph.ainvoke({"topic": "Durable execution"})

    assert result["task_count"] == 4
    assert [f["question"] for f in result["findings"]] == asked
    report_prompt = fake_llm.log()[-1]["last_user"]
    assert all(q in report_prompt for q in asked)
    assert result["report"].startswith("Fake answer to: Topic: Durable execution")
    assert set(result) == {"report", "task_count", "findings", "review"}
    assert result["review"] is None  # Context.review_plan is off by default


@pytest.mark.parametrize(
    ("planned", "expected"),
    [(["a?", "b?", "c?", "d?", "e?", "f?"], 4), (["a?", "a?", " ", "b?"], 2)],
    ids=["too-many-cut", "duplicates-and-blanks-dropped"],
)
async def test_plan_is_corrected(fake_llm, planned, expected):
    fake_llm.add_rules({"schema": "ResearchPlan", "response": questions(*planned)})

    result = await graph.ainvoke({"topic": "Tea"})

    assert result["task_count"] == expected


async def test_a_plan_with_fewer_than_two_questions_fails_after_retries(fake_llm):
    fake_llm.add_rules({"schema": "ResearchPlan", "response": questions("Only one?")})

    with pytest.raises(MalformedOutputError, match="at least 2 are needed"):
        await graph.ainvoke({"topic": "Tea"})
    assert len(fake_llm.log()) == LLM_ATTEMPTS
